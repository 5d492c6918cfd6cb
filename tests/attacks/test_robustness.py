import importlib.util
import sys
import types

import pytest
import torch
from torch import nn

from mmvgm.attacks.robustness import INSTALL_HINT, as_class_logits, evaluate_attack, parse_attack_spec
from mmvgm.errors import DependencyError, InputError

HAS_TORCHATTACKS = importlib.util.find_spec("torchattacks") is not None


def test_parse_attack_spec_fills_defaults():
    pgd = parse_attack_spec("pgd:eps=4/255,steps=10")
    assert pgd.name == "pgd" and pgd.params["eps"] == pytest.approx(4 / 255) and pgd.params["steps"] == 10
    assert pgd.params["alpha"] == pytest.approx(1 / 255) and pgd.params["random_start"] is True
    fgsm = parse_attack_spec("FGSM:eps=0.01")
    assert fgsm.name == "fgsm" and fgsm.params == {"eps": 0.01}
    assert str(parse_attack_spec("fgsm")) == "fgsm:eps=0.0156863"


@pytest.mark.parametrize("spec, words", [("pgd:eps=5/0", "zero"), ("pgd:eps=2", "2/255"), ("pgd:eps=-1", "> 0"),
                                         ("pgd:steps=0", ">= 1"), ("cw:c=1", "unknown attack"),
                                         ("fgsm:steps=3", "no parameter 'steps'"), ("pgd:eps", "key=value"),
                                         ("pgd:alpha=0", "alpha must be > 0"), ("", "unknown attack"),
                                         ("pgd:random_start=maybe", "true or false")])
def test_parse_attack_spec_rejects(spec, words):
    with pytest.raises(InputError, match=words):
        parse_attack_spec(spec)


def test_binary_logits_become_two_classes():
    logits = as_class_logits(torch.tensor([2.0, -1.0]))
    assert logits.shape == (2, 2) and logits.argmax(1).tolist() == [1, 0]
    assert torch.allclose(logits.softmax(1)[:, 1], torch.sigmoid(torch.tensor([2.0, -1.0])))
    assert as_class_logits({"detect": torch.zeros(3), "trace": torch.zeros(3, 9)}, "trace").shape == (3, 9)
    with pytest.raises(InputError, match="no 'trace'"):
        as_class_logits({"detect": torch.zeros(3)}, "trace")


@pytest.mark.skipif(HAS_TORCHATTACKS, reason="torchattacks is installed")
def test_missing_extra_says_how_to_install():
    with pytest.raises(DependencyError) as err:
        evaluate_attack(lambda x: x, [], "pgd:eps=4/255,steps=10")
    assert INSTALL_HINT in str(err.value) and "pip install 'mmvgm[robustness]'" in str(err.value)


class _Detector(nn.Module):
    """Fake-if-bright: a linear detector on the mean pixel of a (B,T,3,H,W) clip."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.tensor(20.0))

    def forward(self, x):
        return {"detect": self.w * (x.mean(dim=(1, 2, 3, 4)) - 0.5)}


def _batches():
    torch.manual_seed(0)
    # margins of about 0.015 on the mean pixel: well inside what eps = 8/255 can move, also for
    # PGD, whose random start spends part of the budget
    bright = 0.51 + 0.01 * torch.rand(4, 2, 3, 4, 4)
    dark = 0.48 + 0.01 * torch.rand(4, 2, 3, 4, 4)
    return [(torch.cat([bright, dark]), torch.tensor([1] * 4 + [0] * 4))]


def _fake_torchattacks():
    """A stand-in with torchattacks' interface: Attack(model, **params)(images, labels)."""
    def sign_step(model, x, y, eps):
        x = x.clone().requires_grad_(True)
        loss = nn.functional.cross_entropy(model(x), y)
        grad, = torch.autograd.grad(loss, x)
        return (x + eps * grad.sign()).clamp(0, 1).detach()

    class FGSM:
        def __init__(self, model, eps):
            self.model, self.eps = model, eps

        def __call__(self, images, labels):
            return sign_step(self.model, images, labels, self.eps)

    class PGD(FGSM):
        def __init__(self, model, eps, alpha, steps, random_start):
            super().__init__(model, eps)
            self.alpha, self.steps = alpha, steps

        def __call__(self, images, labels):
            x = images
            for _ in range(self.steps):
                x = sign_step(self.model, x, labels, self.alpha)
                x = (images + (x - images).clamp(-self.eps, self.eps)).clamp(0, 1)
            return x

    return types.SimpleNamespace(FGSM=FGSM, PGD=PGD)


@pytest.mark.parametrize("spec", ["fgsm:eps=8/255", "pgd:eps=8/255,steps=5,alpha=2/255"])
def test_evaluate_attack_plumbing_with_a_stand_in(monkeypatch, spec):
    monkeypatch.setitem(sys.modules, "torchattacks", _fake_torchattacks())
    seen = []
    res = evaluate_attack(_Detector(), _batches(), spec, progress=seen.append)
    assert res["n"] == 8 and seen == [8]
    assert res["clean_accuracy"] == 1.0 and res["adversarial_accuracy"] < 0.5
    assert res["attack"].startswith(spec.split(":")[0])


@pytest.mark.skipif(not HAS_TORCHATTACKS, reason="torchattacks (the robustness extra) is not installed")
@pytest.mark.parametrize("spec", ["fgsm:eps=8/255", "pgd:eps=8/255,steps=5"])
def test_evaluate_attack_with_torchattacks(spec):
    res = evaluate_attack(_Detector(), _batches(), spec)
    assert res["clean_accuracy"] == 1.0 and res["adversarial_accuracy"] < 0.5
