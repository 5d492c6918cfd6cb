"""Adversarial robustness of a trained detector with torchattacks (optional, installed on its own).

``parse_attack_spec("pgd:eps=4/255,steps=10")`` validates a spec without torchattacks;
``evaluate_attack(model_fn, batches, spec, rule=...)`` runs it and returns clean and adversarial
accuracy under one decision rule. ``mmvgm eval --attack SPEC`` calls these with
``CalibratedRule``: the checkpoint's calibrated threshold, so its clean accuracy is the table's.

``model_fn`` takes *[0,1] pixel* inputs (normalisation inside), e.g. (B,T,3,H,W) clips, and
returns logits: (B,) binary detect logits (real=0, fake=1), (B,N) class logits, or an mmvgm
model output dict (``output_key`` picks ``"detect"`` or ``"trace"``; default: detect if present).

torchattacks is installed with ``--no-deps`` (``INSTALL_HINT``): its metadata pins
``requests~=2.25.1``, which would downgrade requests, urllib3, idna and chardet, yet it never
imports requests; what it does import (torch, torchvision, numpy, scipy, tqdm) comes with mmvgm.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Callable, Dict, Iterable, Optional, Protocol, Tuple, Union

import torch
from torch import nn

from mmvgm.attacks.budget import parse_bool, parse_eps, parse_fraction, parse_positive_int
from mmvgm.checkpoint.calibration import Calibration, calibrate_outputs, predictions
from mmvgm.errors import DependencyError, InputError

# the one command README, .ci/run and the error message give (tests check they agree)
INSTALL_HINT = 'python -m pip install --no-deps "torchattacks>=3.5"'

# attack name -> (torchattacks class, {param: (parser, default)}); a default of None is derived
ATTACKS: Dict[str, Tuple[str, Dict[str, Tuple[Callable[[str], Any], Any]]]] = {
    "pgd": ("PGD", {"eps": (parse_eps, 4 / 255),
                    "alpha": (lambda v: _positive(parse_fraction(v, "alpha"), "alpha"), None),
                    "steps": (lambda v: parse_positive_int(v, "steps"), 10),
                    "random_start": (lambda v: parse_bool(v, "random_start"), True)}),
    "fgsm": ("FGSM", {"eps": (parse_eps, 4 / 255)}),
}


def _positive(value: float, what: str) -> float:
    if value <= 0:
        raise InputError(f"{what} must be > 0, got {value}")
    return value


@dataclass(frozen=True)
class AttackSpec:
    name: str
    params: Dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return self.name + ":" + ",".join(f"{k}={v:.6g}" if isinstance(v, float) else f"{k}={v}"
                                          for k, v in self.params.items())


def parse_attack_spec(spec: str) -> AttackSpec:
    """``"pgd:eps=4/255,steps=10"`` or ``"fgsm:eps=2/255"`` -> AttackSpec with every parameter filled.

    PGD's ``alpha`` defaults to eps/4. Unknown attacks or parameters and bad values raise InputError.
    """
    text = (spec or "").strip()
    name, _, rest = text.partition(":")
    name = name.strip().lower()
    if name not in ATTACKS:
        raise InputError(f"unknown attack '{name or text}'; known: {', '.join(ATTACKS)} "
                         "(e.g. pgd:eps=4/255,steps=10 or fgsm:eps=4/255)")
    allowed = ATTACKS[name][1]
    given: Dict[str, str] = {}
    for item in (i.strip() for i in rest.split(",") if i.strip()):
        key, eq, value = item.partition("=")
        key = key.strip()
        if not eq or not value.strip():
            raise InputError(f"attack parameter '{item}' must be key=value (e.g. eps=4/255)")
        if key not in allowed:
            raise InputError(f"{name} has no parameter '{key}'; known: {', '.join(allowed)}")
        given[key] = value.strip()
    params = {k: (parser(given[k]) if k in given else default) for k, (parser, default) in allowed.items()}
    if name == "pgd" and params["alpha"] is None:
        params["alpha"] = params["eps"] / 4
    return AttackSpec(name, params)


def require_torchattacks() -> ModuleType:
    """The torchattacks module, or a DependencyError that gives the one command to install it."""
    try:
        import torchattacks
    except ImportError:
        raise DependencyError("adversarial evaluation (--attack) needs torchattacks, which is not installed; "
                              f"install it without its requests pin: {INSTALL_HINT}") from None
    return torchattacks


class DecisionRule(Protocol):
    """How ``evaluate_attack`` turns ``model_fn``'s output into labels, and what the attack ascends."""

    threshold: Optional[float]  # the P(fake) threshold it applies, if any (reported)

    def predict(self, out: Any) -> torch.Tensor: ...  # (B,) label indices

    def logits(self, out: Any) -> torch.Tensor: ...  # (B, C) logits whose argmax is predict's

    def describe(self) -> str: ...


class ArgmaxRule:
    """The most likely class of ``model_fn``'s logits (for binary detect logits: fake if logit > 0)."""

    threshold: Optional[float] = None

    def __init__(self, output_key: Optional[str] = None) -> None:
        self.output_key = output_key

    def logits(self, out: Any) -> torch.Tensor:
        return as_class_logits(out, self.output_key)

    def predict(self, out: Any) -> torch.Tensor:
        return self.logits(out).argmax(1)

    def describe(self) -> str:
        return "the argmax of the raw logits"


@dataclass(frozen=True)
class CalibratedRule:
    """A checkpoint's own decision on its raw head logits: the rule of ``mmvgm eval``'s table
    (``checkpoint.calibration.predictions``) and of every verdict (``Scorer.verdict``), i.e.
    calibrated P(fake) against the fitted threshold, then the most probable calibrated source."""

    calibration: Calibration
    task: str

    @property
    def threshold(self) -> Optional[float]:
        return None if self.task == "trace" else float(self.calibration.threshold)

    def predict(self, out: Dict[str, torch.Tensor]) -> torch.Tensor:
        raw = {k: out[k].detach().float().cpu().numpy() for k in ("detect", "trace") if k in out}
        decided = predictions(calibrate_outputs(raw, self.calibration, self.task), self.calibration, self.task)
        return torch.as_tensor(decided, dtype=torch.long)

    def logits(self, out: Dict[str, torch.Tensor]) -> torch.Tensor:
        """(B, K) logits over the task's labels whose argmax is ``predict`` (ties aside): the
        attack's loss then pushes across the checkpoint's threshold, not across P(fake) = 0.5."""
        cal = self.calibration
        if self.task == "trace":
            return out["trace"].float() / cal.temperature
        margin = out["detect"].float().reshape(-1, 1) / cal.temperature - _logit(cal.threshold)
        if self.task == "detect":
            return torch.cat([torch.zeros_like(margin), margin], dim=1)
        sources = torch.log_softmax(out["trace"].float() / (cal.trace_temperature or 1.0), dim=1)
        # the most probable source scores the margin itself: fake wins exactly when P(fake) passes
        return torch.cat([torch.zeros_like(margin), margin + sources - sources.max(1, keepdim=True).values], 1)

    def describe(self) -> str:
        if self.task == "trace":
            return "the most probable calibrated source, as in the table"
        rule = f"fake at calibrated P(fake) >= {100 * self.calibration.threshold:.1f}%, the checkpoint's threshold"
        return rule + (", then the most probable source" if self.task == "joint" else "") + ", as in the table"


def _logit(p: float) -> float:
    p = min(max(float(p), 1e-12), 1 - 1e-12)  # a threshold of 0 or 1 still orders every score
    return math.log(p / (1 - p))


class _Logits(nn.Module):
    """Adapts ``model_fn`` to what torchattacks expects: a module returning (B, C) logits."""

    def __init__(self, model_fn: Callable, rule: DecisionRule) -> None:
        super().__init__()
        self.model_fn, self.rule = model_fn, rule
        if isinstance(model_fn, nn.Module):
            self.inner = model_fn
        self._anchor = nn.Parameter(torch.zeros(0), requires_grad=False)  # torchattacks reads a device from it

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.rule.logits(self.model_fn(inputs))


def as_class_logits(out: Any, output_key: Optional[str] = None) -> torch.Tensor:
    """(B,C) logits from a tensor or an mmvgm output dict; (B,) detect logits become [0, l]."""
    if isinstance(out, dict):
        key = output_key or ("detect" if "detect" in out else "trace")
        if key not in out:
            raise InputError(f"model output has no '{key}' logits (has {', '.join(out)})")
        out = out[key]
    if out.ndim == 1 or (out.ndim == 2 and out.shape[1] == 1):
        out = out.reshape(-1, 1)
        return torch.cat([torch.zeros_like(out), out], dim=1)  # softmax of this = sigmoid of l
    return out


def evaluate_attack(model_fn: Callable, batches: Iterable, spec: Union[str, AttackSpec],
                    device: Optional[Union[str, torch.device]] = None, output_key: Optional[str] = None,
                    progress: Optional[Callable[[int], None]] = None,
                    rule: Optional[DecisionRule] = None) -> dict:
    """Clean and adversarial accuracy of ``model_fn`` over ``batches`` of ``(inputs, labels[, ...])``.

    ``inputs`` are float in [0,1]; labels are class indices (0 real / 1 fake for detect logits).
    ``rule`` (a ``DecisionRule``; default ``ArgmaxRule(output_key)``) decides the labels of both
    accuracies and gives the logits the attack ascends; the result names it (``decision``,
    ``threshold``).
    Raises DependencyError (with the install command) when torchattacks is missing.
    """
    spec = parse_attack_spec(spec) if isinstance(spec, str) else spec
    ta = require_torchattacks()
    rule = rule if rule is not None else ArgmaxRule(output_key)
    device = torch.device(device) if device is not None else torch.device("cpu")
    model = _Logits(model_fn, rule).to(device)
    attack = getattr(ta, ATTACKS[spec.name][0])(model, **spec.params)
    n = clean_ok = adv_ok = 0
    for batch in batches:
        inputs, labels = batch[0].to(device).float(), torch.as_tensor(batch[1]).to(device).long()
        if inputs.numel() and (inputs.min() < 0 or inputs.max() > 1):
            raise InputError("attack inputs must be [0,1] pixels (normalise inside model_fn)")
        clean_ok += _correct(model_fn, rule, inputs, labels)
        adv_ok += _correct(model_fn, rule, attack(inputs, labels), labels)
        n += len(labels)
        if progress is not None:
            progress(len(labels))
    return {"attack": str(spec), "params": dict(spec.params), "n": n,
            "clean_accuracy": clean_ok / n if n else None, "adversarial_accuracy": adv_ok / n if n else None,
            "decision": rule.describe(), "threshold": rule.threshold}


def _correct(model_fn: Callable, rule: DecisionRule, inputs: torch.Tensor, labels: torch.Tensor) -> int:
    with torch.no_grad():
        return int((rule.predict(model_fn(inputs)).to(labels.device) == labels).sum())


def summary(result: Dict[str, Any]) -> str:
    """One line for ``evaluate_attack``'s result: both accuracies, the videos, the decision rule."""
    def acc(key: str) -> str:
        return "n/a" if result.get(key) is None else f"{result[key]:.4f}"

    rule = f"; {result['decision']}" if result.get("decision") else ""
    return (f"attack {result['attack']}: clean accuracy {acc('clean_accuracy')}, adversarial accuracy "
            f"{acc('adversarial_accuracy')} ({result['n']} videos{rule})")
