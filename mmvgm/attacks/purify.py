"""Purifications an attacker may apply to strip a protection, and how much protection survives.

Specs, comma-separated (a registry, :data:`PURIFIERS`; add one with :func:`register_purifier`):

* ``jpeg:Q`` - JPEG at quality Q; ``resize:S`` - down by S and back up; ``blur:SIGMA`` - Gaussian
  blur (pixels); ``noise:SIGMA`` - seeded Gaussian noise ([0,1] pixel units), rounded to 8 bits;
* ``upscale:DIR[:NOISE]`` - noisy upscaling: down by 4, then a local
  ``StableDiffusionUpscalePipeline`` (folder or hub id; ``NOISE`` its ``noise_level``, default
  20, the pipeline's) back up, resized to the original size;
* ``diffpure:DIR:STRENGTH`` - img2img at ``STRENGTH`` (0-1, e.g. 0.1) through a local Stable
  Diffusion pipeline (``AutoPipelineForImage2Image``), empty prompt, no guidance;
* ``none`` - always the first row, the unpurified reference.

Pipelines run with a fixed seed and are cached per process (:func:`mmvgm.attacks.generation.load_pipeline`),
so a folder named twice loads once. A purifier is the attacker's tool: safety checkers are off,
since a blacked-out image would read as a protection that "survived". Folder paths may not
contain commas. ``evaluate_protection`` compares the protected image with the original (and the
target in directed mode) through each purification.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple, Union

import numpy as np
import torch

from mmvgm.attacks.budget import parse_fraction, parse_positive_int
from mmvgm.errors import InputError
from mmvgm.io.image import jpeg_roundtrip

DEFAULT_PURIFY = "jpeg:75,jpeg:50,resize:0.5,blur:1"
SEED = 0  # every random purification draws from this seed, so original and protected get the same draw
UPSCALE_FACTOR = 4  # the x4 upscaler's factor
UPSCALE_NOISE = 20  # StableDiffusionUpscalePipeline's default noise_level
UPSCALE_STEPS = 20
DIFFPURE_STEPS = 50  # img2img runs int(steps * strength) of them


@dataclass(frozen=True)
class PurifierKind:
    """One kind of purification: ``parse(argument text)`` -> arguments (InputError on bad ones)
    and ``apply(uint8 image, *arguments, device=...)`` -> uint8 image of the same size."""

    apply: Callable[..., np.ndarray]
    parse: Callable[[str], tuple]
    usage: str  # what the argument is, with an example


PURIFIERS: Dict[str, PurifierKind] = {}


def register_purifier(name: str, parse: Callable[[str], tuple], usage: str) -> Callable:
    """Decorator: make ``apply(image, *args, device=None)`` the purification ``name:ARG``."""
    def deco(apply: Callable[..., np.ndarray]) -> Callable[..., np.ndarray]:
        PURIFIERS[name] = PurifierKind(apply, parse, usage)
        return apply
    return deco


def _number(valid: Callable[[float], bool], what: str) -> Callable[[str], tuple]:
    def parse(text: str) -> tuple:
        value = parse_fraction(text, "value")
        if not valid(value):
            raise InputError(f"value must be {what}")
        return (value,)
    return parse


def _to_u8(image: np.ndarray) -> np.ndarray:
    return np.round(np.clip(image, 0.0, 1.0) * 255).astype(np.uint8)


# ---------------------------------------------------------------- pixel purifications


@register_purifier("jpeg", _number(lambda q: 1 <= q <= 100 and float(q).is_integer(), "a quality 1-100"),
                   "a quality 1-100, e.g. jpeg:75")
def _jpeg(image: np.ndarray, quality: float, device=None) -> np.ndarray:
    return jpeg_roundtrip(image, int(quality))


@register_purifier("resize", _number(lambda s: 0 < s < 1, "a scale in (0, 1)"), "a scale in (0, 1), e.g. resize:0.5")
def _resize(image: np.ndarray, scale: float, device=None) -> np.ndarray:
    import cv2

    h, w = image.shape[:2]
    small = cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


@register_purifier("blur", _number(lambda s: 0 < s <= 50, "a sigma in (0, 50]"), "a sigma in (0, 50], e.g. blur:1")
def _blur(image: np.ndarray, sigma: float, device=None) -> np.ndarray:
    import cv2

    return cv2.GaussianBlur(image, (0, 0), sigmaX=float(sigma))


@register_purifier("noise", _number(lambda s: 0 < s <= 1, "a sigma in (0, 1] ([0,1] pixel units)"),
                   "a sigma in (0, 1] ([0,1] pixel units), e.g. noise:0.02")
def _noise(image: np.ndarray, sigma: float, device=None) -> np.ndarray:
    noise = np.random.default_rng(SEED).normal(0.0, float(sigma), image.shape)
    return _to_u8(image / 255.0 + noise)


# ---------------------------------------------------------------- pipeline purifications


def _folder(text: str, name: str) -> str:
    from mmvgm.attacks.generation import pipeline_spec_exists

    if not text:
        raise InputError("needs a pipeline folder or hub id")
    pipeline_spec_exists(text, f"purification '{name}'")
    return text


def _parse_upscale(text: str) -> tuple:
    folder, _, noise = text.rpartition(":")
    if not folder or not noise.strip().isdigit():  # no NOISE field: the whole text is the folder
        return _folder(text, "upscale"), UPSCALE_NOISE
    return _folder(folder, "upscale"), parse_positive_int(noise, "noise level", allow_zero=True)


def _parse_diffpure(text: str) -> tuple:
    folder, _, strength = text.rpartition(":")
    if not folder:
        raise InputError("needs a folder and a strength, e.g. diffpure:DIR:0.1")
    value = parse_fraction(strength, "strength")
    if not 0 < value <= 1:
        raise InputError(f"strength must be in (0, 1], got {strength}")
    return _folder(folder, "diffpure"), value


def _run_pipeline(pipe, **kwargs) -> np.ndarray:
    """One image from ``pipe`` (seeded, only the options its __call__ takes) as uint8."""
    import inspect

    params = inspect.signature(pipe.__call__).parameters
    if getattr(pipe, "safety_checker", None) is not None:
        pipe.safety_checker = None  # see the module docstring
    kwargs = {k: v for k, v in kwargs.items() if k in params}
    with torch.no_grad():
        out = pipe(generator=torch.Generator().manual_seed(SEED), output_type="np", **kwargs)
    return _to_u8(np.asarray(out.images[0], np.float32))


@register_purifier("upscale", _parse_upscale, "a StableDiffusionUpscalePipeline folder, e.g. upscale:DIR or upscale:DIR:20")
def _upscale(image: np.ndarray, folder: str, noise_level: int, device=None) -> np.ndarray:
    import cv2
    from PIL import Image

    from mmvgm.attacks.generation import load_pipeline

    pipe = load_pipeline(folder, "StableDiffusionUpscalePipeline", device)
    top = getattr(pipe.config, "max_noise_level", None)
    if top is not None and noise_level > top:
        raise InputError(f"purification 'upscale': noise level {noise_level} is above this pipeline's {top}")
    h, w = image.shape[:2]
    small = cv2.resize(image, (max(1, w // UPSCALE_FACTOR), max(1, h // UPSCALE_FACTOR)), interpolation=cv2.INTER_AREA)
    out = _run_pipeline(pipe, prompt="", image=Image.fromarray(small), noise_level=noise_level,
                        num_inference_steps=UPSCALE_STEPS)
    return cv2.resize(out, (w, h), interpolation=cv2.INTER_AREA)


@register_purifier("diffpure", _parse_diffpure, "a Stable Diffusion folder and a strength, e.g. diffpure:DIR:0.1")
def _diffpure(image: np.ndarray, folder: str, strength: float, device=None) -> np.ndarray:
    import cv2
    from PIL import Image

    from mmvgm.attacks.generation import load_pipeline

    pipe = load_pipeline(folder, "AutoPipelineForImage2Image", device)
    # guidance 1: with an empty prompt the guided and unguided passes are the same, so skip one
    out = _run_pipeline(pipe, prompt="", image=Image.fromarray(image), strength=strength,
                        num_inference_steps=DIFFPURE_STEPS, guidance_scale=1.0)
    h, w = image.shape[:2]
    # img2img floors the size to the VAE's multiple
    return out if out.shape[:2] == (h, w) else cv2.resize(out, (w, h), interpolation=cv2.INTER_LINEAR)


# ---------------------------------------------------------------- specs


@dataclass(frozen=True)
class Purification:
    name: str
    args: Tuple = ()

    def __str__(self) -> str:
        return ":".join([self.name] + [f"{a:g}" if isinstance(a, float) else str(a) for a in self.args])

    def __call__(self, image: np.ndarray, device: Optional[torch.device] = None) -> np.ndarray:
        return image if self.name == "none" else PURIFIERS[self.name].apply(image, *self.args, device=device)


def parse_purify(spec: Union[str, List[str], None]) -> List[Purification]:
    """``"jpeg:75,resize:0.5"`` -> [none, jpeg:75, resize:0.5] (``none`` always first; repeats once)."""
    items = spec.split(",") if isinstance(spec, str) else list(spec or [])
    out = [Purification("none")]
    for item in (i.strip() for i in items):
        if not item or item == "none":
            continue
        name, _, arg = item.partition(":")
        kind = PURIFIERS.get(name)
        if kind is None:
            raise InputError(f"unknown purification '{name}'; known: {', '.join(PURIFIERS)} (e.g. {DEFAULT_PURIFY})")
        if not arg:
            raise InputError(f"purification '{name}' needs {kind.usage}")
        try:
            out.append(Purification(name, kind.parse(arg)))
        except InputError as exc:
            if exc.message.startswith("purification"):
                raise
            raise InputError(f"purification '{item}': {exc.message}", exc.path) from None
    return list(dict.fromkeys(out))


def evaluate_protection(original: np.ndarray, protected: np.ndarray, encoder, target: Optional[np.ndarray] = None,
                        purify: Union[str, List[str], None] = DEFAULT_PURIFY,
                        on_step: Optional[Callable[[str], None]] = None) -> dict:
    """How much of the embedding shift survives each purification.

    For each purification p and embedding k, with ``ref`` the target (directed) or the original:
    ``cos_protected`` = cos(E(p(protected)), E(ref)), ``cos_original`` = cos(E(p(original)), E(ref))
    (what the purification alone does), ``effect`` = the protection's shift beyond that (toward
    the target, or away from the original), and ``survival`` = effect / effect without purification.
    Pipeline purifications run on the encoder's device; ``on_step(name)`` follows each one.
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
        e_prot = embed(encoder, tensor(p(protected, dev)))
        e_orig = embed(encoder, tensor(p(original, dev)))
        rows.append({"purification": str(p), "encoders": _effects(e_prot, e_orig, ref, directed, p, base_effect)})
        if on_step is not None:
            on_step(str(p))
    return {"mode": "directed" if directed else "undirected", "results": rows}


def _effects(e_prot, e_orig, ref, directed: bool, p: Purification, base_effect: dict) -> dict:
    out = {}
    for k in ref:
        cp = float(torch.nn.functional.cosine_similarity(e_prot[k], ref[k]).item())
        co = float(torch.nn.functional.cosine_similarity(e_orig[k], ref[k]).item())
        effect = cp - co if directed else co - cp
        if p.name == "none":
            base_effect[k] = effect
        base = base_effect.get(k, 0.0)
        out[k] = {"cos_protected": round(cp, 6), "cos_original": round(co, 6), "effect": round(effect, 6),
                  "survival": round(effect / base, 4) if abs(base) > 1e-12 else None}
    return out


def survival_side_by_side(results: Dict[str, dict]) -> List[dict]:
    """``{label: evaluate_protection result}`` (same purifications) -> rows of
    ``{"purification", "embedding", label: survival, ...}``: e.g. a protection made with EOT
    beside one made without."""
    labels = list(results)
    first = results[labels[0]]["results"]
    rows = []
    for i, row in enumerate(first):
        for name in row["encoders"]:
            rows.append({"purification": row["purification"], "embedding": name,
                         **{lab: results[lab]["results"][i]["encoders"][name]["survival"] for lab in labels}})
    return rows
