import importlib.util
import sys
import tomllib
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from mmvgm.attacks.robustness import (INSTALL_HINT, ArgmaxRule, CalibratedRule, as_class_logits, evaluate_attack,
                                      parse_attack_spec, require_torchattacks, summary)
from mmvgm.checkpoint.calibration import Calibration, calibrate_outputs, predictions
from mmvgm.errors import DependencyError, InputError

HAS_TORCHATTACKS = importlib.util.find_spec("torchattacks") is not None
ROOT = Path(__file__).resolve().parents[2]


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


def test_missing_torchattacks_gives_the_one_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "torchattacks", None)  # import torchattacks now raises ImportError
    for call in (require_torchattacks, lambda: evaluate_attack(lambda x: x, [], "pgd:eps=4/255,steps=10")):
        with pytest.raises(DependencyError) as err:
            call()
        message = str(err.value)
        assert INSTALL_HINT in message and "\n" not in message
    assert INSTALL_HINT == 'python -m pip install --no-deps "torchattacks>=3.5"'


def test_install_command_is_the_one_readme_and_ci_use():
    """torchattacks' metadata pins requests~=2.25.1 (downgrading requests, urllib3, idna and chardet),
    so it is installed with --no-deps: README, the error message and CI give the same command,
    and the robustness extra must not pull torchattacks (and with it that pin) back in."""
    assert INSTALL_HINT in (ROOT / "README.md").read_text(encoding="utf-8")
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert INSTALL_HINT in ci and ci.index(INSTALL_HINT) < ci.rindex("python -m pytest -q")
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["optional-dependencies"]
    assert not any("torchattacks" in req or "requests" in req for req in extras["robustness"])


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


@pytest.mark.skipif(not HAS_TORCHATTACKS, reason="torchattacks is not installed (README: Detector robustness)")
@pytest.mark.parametrize("spec", ["fgsm:eps=8/255", "pgd:eps=8/255,steps=5"])
def test_evaluate_attack_with_torchattacks(spec):
    res = evaluate_attack(_Detector(), _batches(), spec)
    assert res["clean_accuracy"] == 1.0 and res["adversarial_accuracy"] < 0.5


def _detect_rule(threshold, temperature=1.0):
    return CalibratedRule(Calibration(temperature=temperature, threshold=threshold), "detect")


def test_accuracies_use_the_rules_threshold(monkeypatch):
    """A threshold every clean video passes calls all 8 fake: clean accuracy 4/8, not argmax's 8/8."""
    monkeypatch.setitem(sys.modules, "torchattacks", _fake_torchattacks())
    low = evaluate_attack(_Detector(), _batches(), "fgsm:eps=1/255", rule=_detect_rule(0.01))
    assert low["clean_accuracy"] == low["adversarial_accuracy"] == 0.5
    assert low["threshold"] == 0.01 and "1.0%" in low["decision"] and "threshold" in low["decision"]
    plain = evaluate_attack(_Detector(), _batches(), "fgsm:eps=1/255")
    assert plain["clean_accuracy"] == 1.0 and plain["threshold"] is None and "argmax" in plain["decision"]
    # the attack ascends the loss of the rule's logits: it pushes fake videos below the threshold
    high = evaluate_attack(_Detector(), _batches(), "fgsm:eps=8/255", rule=_detect_rule(0.6, temperature=0.5))
    assert high["clean_accuracy"] == 1.0 and high["adversarial_accuracy"] < 0.5


@pytest.mark.parametrize("task", ["detect", "trace", "joint"])
def test_calibrated_rule_is_the_tables_decision_and_its_logits_argmax(task):
    rng = np.random.default_rng(1)
    raw = {"detect": rng.normal(0, 3, 64).astype(np.float32), "trace": rng.normal(0, 3, (64, 3)).astype(np.float32)}
    cal = Calibration(temperature=1.7, threshold=0.8, trace_temperature=0.6 if task == "joint" else None)
    out = {k: torch.from_numpy(v) for k, v in raw.items() if task == "joint" or k == task}
    rule = CalibratedRule(cal, task)
    want = predictions(calibrate_outputs(raw, cal, task), cal, task)
    got = rule.predict(out)
    assert got.tolist() == want.tolist() and len(set(want.tolist())) > 1
    assert rule.logits(out).argmax(1).tolist() == want.tolist()
    assert rule.logits(out).shape[1] == {"detect": 2, "trace": 3, "joint": 4}[task]
    assert rule.threshold == (None if task == "trace" else 0.8)


def test_summary_line_names_the_decision():
    line = summary({"attack": "fgsm:eps=0.00784314", "n": 7, "clean_accuracy": 2 / 7, "adversarial_accuracy": None,
                    "decision": _detect_rule(0.7312).describe(), "threshold": 0.7312})
    assert line == ("attack fgsm:eps=0.00784314: clean accuracy 0.2857, adversarial accuracy n/a (7 videos; "
                    "fake at calibrated P(fake) >= 73.1%, the checkpoint's threshold, as in the table)")
    assert "argmax" in summary({"attack": "fgsm", "n": 0, "clean_accuracy": None, "adversarial_accuracy": None,
                                "decision": ArgmaxRule().describe()})
