"""Adversarial robustness of a trained detector with torchattacks (the optional ``robustness`` extra).

``parse_attack_spec("pgd:eps=4/255,steps=10")`` validates a spec without torchattacks;
``evaluate_attack(model_fn, batches, spec)`` runs it and returns clean and adversarial accuracy.
The engine's ``mmvgm eval --attack SPEC`` calls these two.

``model_fn`` takes *[0,1] pixel* inputs (normalisation inside), e.g. (B,T,3,H,W) clips, and
returns logits: (B,) binary detect logits (real=0, fake=1), (B,N) class logits, or an mmvgm
model output dict (``output_key`` picks ``"detect"`` or ``"trace"``; default: detect if present).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, Optional, Tuple, Union

import torch
from torch import nn

from mmvgm.attacks.budget import parse_bool, parse_eps, parse_fraction, parse_positive_int
from mmvgm.errors import DependencyError, InputError

INSTALL_HINT = "pip install 'mmvgm[robustness]'"

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


def _torchattacks():
    try:
        import torchattacks
    except ImportError:
        raise DependencyError(f"adversarial evaluation needs torchattacks: {INSTALL_HINT}") from None
    return torchattacks


class _Logits(nn.Module):
    """Adapts ``model_fn`` to what torchattacks expects: a module returning (B, C) logits."""

    def __init__(self, model_fn: Callable, output_key: Optional[str] = None) -> None:
        super().__init__()
        self.model_fn, self.output_key = model_fn, output_key
        if isinstance(model_fn, nn.Module):
            self.inner = model_fn
        self._anchor = nn.Parameter(torch.zeros(0), requires_grad=False)  # torchattacks reads a device from it

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return as_class_logits(self.model_fn(inputs), self.output_key)


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
                    progress: Optional[Callable[[int], None]] = None) -> dict:
    """Clean and adversarial accuracy of ``model_fn`` over ``batches`` of ``(inputs, labels[, ...])``.

    ``inputs`` are float in [0,1]; labels are class indices (0 real / 1 fake for detect logits).
    Raises DependencyError (with the install command) when torchattacks is missing.
    """
    spec = parse_attack_spec(spec) if isinstance(spec, str) else spec
    ta = _torchattacks()
    device = torch.device(device) if device is not None else torch.device("cpu")
    model = _Logits(model_fn, output_key).to(device)
    cls_name, _ = ATTACKS[spec.name]
    attack = getattr(ta, cls_name)(model, **spec.params)
    n = clean_ok = adv_ok = 0
    for batch in batches:
        inputs, labels = batch[0].to(device).float(), torch.as_tensor(batch[1]).to(device).long()
        if inputs.numel() and (inputs.min() < 0 or inputs.max() > 1):
            raise InputError("attack inputs must be [0,1] pixels (normalise inside model_fn)")
        with torch.no_grad():
            clean_ok += int((model(inputs).argmax(1) == labels).sum())
        adv = attack(inputs, labels)
        with torch.no_grad():
            adv_ok += int((model(adv).argmax(1) == labels).sum())
        n += len(labels)
        if progress is not None:
            progress(len(labels))
    return {"attack": str(spec), "params": dict(spec.params), "n": n,
            "clean_accuracy": clean_ok / n if n else None, "adversarial_accuracy": adv_ok / n if n else None}
