"""Purifications an attacker may apply to strip a protection, and how much protection survives.

Specs: ``jpeg:75``, ``resize:0.5`` (down and back up), ``blur:1`` (Gaussian sigma in pixels),
``none``. ``evaluate_protection`` compares the protected image with the original (and the
target in directed mode) through each purification.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Union

import numpy as np
import torch

from mmvgm.attacks.budget import parse_fraction
from mmvgm.errors import InputError
from mmvgm.io.image import jpeg_roundtrip

DEFAULT_PURIFY = "jpeg:75,jpeg:50,resize:0.5,blur:1"


def _resize(image: np.ndarray, scale: float) -> np.ndarray:
    import cv2

    h, w = image.shape[:2]
    small = cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def _blur(image: np.ndarray, sigma: float) -> np.ndarray:
    import cv2

    return cv2.GaussianBlur(image, (0, 0), sigmaX=float(sigma))


# name -> (function, check of the parameter, description of valid values)
PURIFIERS: Dict[str, tuple] = {
    "jpeg": (jpeg_roundtrip, lambda q: 1 <= q <= 100 and float(q).is_integer(), "a quality 1-100"),
    "resize": (_resize, lambda s: 0 < s < 1, "a scale in (0, 1)"),
    "blur": (_blur, lambda s: 0 < s <= 50, "a sigma in (0, 50]"),
}


@dataclass(frozen=True)
class Purification:
    name: str
    value: Optional[float] = None

    def __str__(self) -> str:
        return self.name if self.value is None else f"{self.name}:{self.value:g}"

    def __call__(self, image: np.ndarray) -> np.ndarray:
        return image if self.name == "none" else PURIFIERS[self.name][0](image, self.value)


def parse_purify(spec: Union[str, List[str], None]) -> List[Purification]:
    """``"jpeg:75,resize:0.5"`` -> [none, jpeg:75, resize:0.5] (``none`` always first)."""
    items = spec.split(",") if isinstance(spec, str) else list(spec or [])
    out = [Purification("none")]
    for item in (i.strip() for i in items):
        if not item or item == "none":
            continue
        name, _, arg = item.partition(":")
        if name not in PURIFIERS:
            raise InputError(f"unknown purification '{name}'; known: {', '.join(PURIFIERS)} (e.g. {DEFAULT_PURIFY})")
        fn, valid, what = PURIFIERS[name]
        if not arg:
            raise InputError(f"purification '{name}' needs {what}, e.g. {name}:{ {'jpeg': 75, 'resize': 0.5, 'blur': 1}[name]}")
        value = parse_fraction(arg, f"{name} value")
        if not valid(value):
            raise InputError(f"purification '{item}': value must be {what}")
        out.append(Purification(name, value))
    return list(dict.fromkeys(out))


def evaluate_protection(original: np.ndarray, protected: np.ndarray, encoder, target: Optional[np.ndarray] = None,
                        purify: Union[str, List[str], None] = DEFAULT_PURIFY) -> dict:
    """How much of the embedding shift survives each purification.

    For each purification p and embedding k, with ``ref`` the target (directed) or the original:
    ``cos_protected`` = cos(E(p(protected)), E(ref)), ``cos_original`` = cos(E(p(original)), E(ref))
    (what the purification alone does), ``effect`` = the protection's shift beyond that (toward
    the target, or away from the original), and ``survival`` = effect / effect without purification.
    """
    from mmvgm.attacks.protect import embed, match_size

    if original.shape != protected.shape:
        raise InputError(f"original {original.shape[1]}x{original.shape[0]} and protected "
                         f"{protected.shape[1]}x{protected.shape[0]} differ in size")
    dev = encoder.device

    def tensor(img: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.array(img, copy=True)).permute(2, 0, 1)[None].float().to(dev) / 255

    directed = target is not None
    ref_img = match_size(tensor(target), tensor(original)) if directed else tensor(original)
    ref = embed(encoder, ref_img)
    rows, base_effect = [], {}
    for p in parse_purify(purify):
        e_prot = embed(encoder, tensor(p(protected)))
        e_orig = embed(encoder, tensor(p(original)))
        entry = {"purification": str(p), "encoders": {}}
        for k in ref:
            cp = float(torch.nn.functional.cosine_similarity(e_prot[k], ref[k]).item())
            co = float(torch.nn.functional.cosine_similarity(e_orig[k], ref[k]).item())
            effect = cp - co if directed else co - cp
            if p.name == "none":
                base_effect[k] = effect
            base = base_effect.get(k, 0.0)
            entry["encoders"][k] = {"cos_protected": round(cp, 6), "cos_original": round(co, 6),
                                    "effect": round(effect, 6),
                                    "survival": round(effect / base, 4) if abs(base) > 1e-12 else None}
        rows.append(entry)
    return {"mode": "directed" if directed else "undirected", "results": rows}
