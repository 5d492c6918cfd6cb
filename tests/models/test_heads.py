import pytest
import torch
import torch.nn.functional as F

from mmvgm.errors import ConfigError
from mmvgm.models.heads import IGNORE_INDEX, joint_targets, label_space_size, loss_terms


def test_joint_targets_real_first():
    detect, trace = joint_targets(torch.tensor([0, 1, 2, 3]))
    assert detect.tolist() == [0.0, 1.0, 1.0, 1.0]
    assert trace.tolist() == [IGNORE_INDEX, 0, 1, 2]


def test_joint_loss_is_the_sum_and_only_fakes_train_tracing():
    outputs = {"detect": torch.tensor([0.3, -1.0, 2.0]), "trace": torch.randn(3, 2)}
    labels = torch.tensor([0, 1, 2])  # real, source 0, source 1
    terms = loss_terms(outputs, labels, "joint")
    bce = F.binary_cross_entropy_with_logits(outputs["detect"], torch.tensor([0.0, 1.0, 1.0]))
    ce = F.cross_entropy(outputs["trace"][1:], torch.tensor([0, 1]))
    assert torch.allclose(terms["detect"], bce) and torch.allclose(terms["trace"], ce)
    assert torch.allclose(terms["loss"], bce + ce)


def test_all_real_batch_gives_zero_trace_loss_and_a_gradient():
    trace = torch.randn(2, 3, requires_grad=True)
    detect = torch.zeros(2, requires_grad=True)
    terms = loss_terms({"detect": detect, "trace": trace}, torch.tensor([0, 0]), "joint")
    assert terms["trace"].item() == 0.0 and torch.isfinite(terms["loss"])
    terms["loss"].backward()
    assert trace.grad.abs().sum() == 0 and detect.grad.abs().sum() > 0


def test_detect_and_trace_losses():
    out = {"detect": torch.tensor([2.0, -2.0])}
    expected = F.binary_cross_entropy_with_logits(out["detect"], torch.tensor([1.0, 0.0]))
    assert torch.allclose(loss_terms(out, torch.tensor([1, 0]), "detect")["loss"], expected)
    logits = torch.randn(2, 5)
    assert torch.allclose(loss_terms({"trace": logits}, torch.tensor([4, 2]), "trace")["loss"],
                          F.cross_entropy(logits, torch.tensor([4, 2])))


@pytest.mark.parametrize("task, outputs, labels", [
    ("detect", {"detect": torch.zeros(2)}, [0, 2]),
    ("trace", {"trace": torch.zeros(2, 3)}, [3, 0]),
    ("joint", {"detect": torch.zeros(2), "trace": torch.zeros(2, 3)}, [4, 0]),
])
def test_labels_out_of_range(task, outputs, labels):
    with pytest.raises(ConfigError, match="out of range"):
        loss_terms(outputs, torch.tensor(labels), task)


def test_label_space_sizes():
    assert (label_space_size("detect", None), label_space_size("trace", 9), label_space_size("joint", 9)) == (2, 9, 10)
