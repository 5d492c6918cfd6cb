"""What a protection does to the generated video: run a local image-to-video pipeline on the
original and on the protected image, with the same seed and prompt, and compare the two videos.

The comparison is per frame (PSNR, SSIM, on the decoded frames in [0,1]) and in latent space:
the relative L2 distance ``||z_prot - z_orig|| / ||z_orig||`` of the final denoised latents,
taken decode-free from the same run through ``callback_on_step_end`` where the pipeline has it
(else its legacy ``callback``), otherwise the pipeline's VAE encoding of the decoded frames; the
report's ``latent_source`` says which.

A **control** tells a real effect from the pipeline's sensitivity to any small change: uniform
random noise with the protection's own L-inf budget (measured from the two images), clipped to
[0,1] and rounded to 8 bits as a saved PNG is. The protection *beats the control* when it
changes the video more than that noise does by every measure.

Pipeline options are passed by the names its ``__call__`` takes (``inspect.signature``), so any
diffusers image-to-video pipeline works (SVD, Wan, CogVideoX, LTX-Video, I2VGen-XL); ``prompt``
is passed only to pipelines that take one. Loaded pipelines are cached per process
(:func:`load_pipeline`), so purifications that name the same folder load it once.
"""
from __future__ import annotations

import functools
import inspect
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from mmvgm.errors import CheckpointError, InputError, PathLike

MAX_SIDE = 1024  # the default working size caps the long side here (the native size of today's models)
SIZE_MULTIPLE = 32  # every listed pipeline accepts sides that are multiples of 32 (LTX needs exactly that)
LATENT_FROM_CALLBACK = "denoised latents of the same run (callback_on_step_end)"
LATENT_FROM_LEGACY_CALLBACK = "denoised latents of the same run (callback)"
LATENT_FROM_VAE = "VAE encoding of the generated frames (the pipeline exposes no latents)"

# on_run(name, total_steps) -> on_step(); the CLI turns these into progress bars
RunHook = Callable[[str, int], Callable[[], None]]


# ---------------------------------------------------------------- loading


def load_pipeline(spec: PathLike, loader: str = "DiffusionPipeline", device: Optional[torch.device] = None) -> Any:
    """A diffusers pipeline from a local folder or a hub id (``resolve_pipeline``), loaded with the
    diffusers class ``loader`` (``DiffusionPipeline``, ``AutoPipelineForImage2Image``, ...) and
    ``local_files_only``; cached per process by (folder, loader, device)."""
    from mmvgm.checkpoint.hub import resolve_pipeline
    from mmvgm.runtime import pick_device

    folder = resolve_pipeline(spec)
    if not folder.is_dir():
        raise CheckpointError("pipeline folder not found", folder)
    if not (folder / "model_index.json").is_file():
        raise CheckpointError("not a diffusers pipeline folder (no model_index.json)", folder)
    dev = device if isinstance(device, torch.device) else pick_device(device)
    return _load_cached(str(folder.resolve()), loader, str(dev))


@functools.lru_cache(maxsize=8)
def _load_cached(folder: str, loader: str, device: str) -> Any:
    import diffusers

    from mmvgm.progress import library_bars_off
    from mmvgm.runtime import autocast_dtype

    dev = torch.device(device)
    try:
        with library_bars_off():
            pipe = getattr(diffusers, loader).from_pretrained(folder, local_files_only=True,
                                                              dtype=autocast_dtype(dev) or torch.float32)
    except (OSError, ValueError, EnvironmentError, TypeError, KeyError) as exc:
        raise CheckpointError(f"cannot load the pipeline as {loader}: {' '.join(str(exc).split())[:300]}",
                              folder) from None
    pipe.set_progress_bar_config(disable=True)  # mmvgm draws its own bars
    return pipe.to(dev)


# ---------------------------------------------------------------- running


@dataclass(frozen=True)
class GenerationSettings:
    """How the pipeline is run; ``size`` (H, W) None: the image's aspect ratio, long side at most
    :data:`MAX_SIDE`, sides floored to :data:`SIZE_MULTIPLE`."""

    prompt: str = ""
    seed: int = 0
    steps: int = 10
    frames: int = 8
    size: Optional[Tuple[int, int]] = None

    def working_size(self, height: int, width: int) -> Tuple[int, int]:
        if self.size:
            return self.size
        scale = min(1.0, MAX_SIDE / max(height, width))
        return tuple(max(SIZE_MULTIPLE, int(s * scale) // SIZE_MULTIPLE * SIZE_MULTIPLE)  # type: ignore[return-value]
                     for s in (height, width))


@dataclass
class Generation:
    frames: np.ndarray  # (F, H, W, 3) float in [0, 1]
    latents: torch.Tensor  # float32, on the CPU
    latent_source: str


def call_options(pipe: Any, settings: GenerationSettings, height: int, width: int) -> Dict[str, Any]:
    """The keyword arguments of ``pipe.__call__`` that ``settings`` fill, by parameter name."""
    params = inspect.signature(pipe.__call__).parameters
    if "image" not in params:
        raise InputError(f"{type(pipe).__name__} is not an image-to-video pipeline (its __call__ takes no image)")
    wanted = {"prompt": settings.prompt, "num_inference_steps": settings.steps, "num_frames": settings.frames,
              "height": height, "width": width, "output_type": "np"}
    return {k: v for k, v in wanted.items() if k in params}


def _latent_hook(params, captured: dict, on_step: Callable[[], None]) -> Tuple[Dict[str, Any], str]:
    """Keyword arguments that capture the final latents (and tick the progress bar), and where
    the latents come from."""
    def keep(latents) -> None:
        captured["latents"] = latents.detach().float().cpu().clone()
        on_step()

    tensors = params.get("callback_on_step_end_tensor_inputs")
    if "callback_on_step_end" in params and (tensors is None or "latents" in (tensors.default or ())):
        def on_end(pipe, step, timestep, kwargs):
            keep(kwargs["latents"])
            return {}  # change nothing
        return {"callback_on_step_end": on_end}, LATENT_FROM_CALLBACK
    if "callback" in params:  # older pipelines: callback(step, timestep, latents)
        return {"callback": lambda step, timestep, latents: keep(latents)}, LATENT_FROM_LEGACY_CALLBACK
    return {}, LATENT_FROM_VAE


def generate(pipe: Any, image: np.ndarray, settings: GenerationSettings = GenerationSettings(),
             on_step: Callable[[], None] = lambda: None) -> Generation:
    """Run ``pipe`` on a uint8 (H,W,3) image with ``settings``; deterministic for a seed."""
    from PIL import Image

    height, width = settings.working_size(*image.shape[:2])
    kwargs = call_options(pipe, settings, height, width)
    params = inspect.signature(pipe.__call__).parameters
    captured: dict = {}
    hook, source = _latent_hook(params, captured, on_step)
    if "generator" in params:  # a CPU generator: the same noise on every device
        kwargs["generator"] = torch.Generator().manual_seed(settings.seed)
    torch.manual_seed(settings.seed)  # pipelines that draw noise without the generator
    with torch.no_grad():
        out = pipe(image=Image.fromarray(image), **kwargs, **hook)
    frames = _frames(out)
    latents = captured.get("latents")
    if latents is None:
        latents, source = vae_latents(pipe, frames), LATENT_FROM_VAE
    return Generation(frames, latents, source)


def _frames(out: Any) -> np.ndarray:
    """A pipeline output's first video as (F, H, W, 3) float in [0, 1]."""
    video = getattr(out, "frames", None)
    if video is None:
        video = getattr(out, "images", None)
    if video is None:
        raise InputError(f"the pipeline returned {type(out).__name__}, which holds no frames")
    first = video[0]
    if isinstance(first, torch.Tensor):
        first = first.float().cpu().numpy()
    if isinstance(first, (list, tuple)):  # PIL frames
        first = np.stack([np.asarray(f.convert("RGB"), np.float32) / 255 for f in first])
    arr = np.asarray(first, np.float32)
    if arr.ndim == 3:  # an image pipeline: one frame
        arr = arr[None]
    if arr.shape[-1] != 3 and arr.shape[1] == 3:  # (F, 3, H, W)
        arr = arr.transpose(0, 2, 3, 1)
    return arr


@torch.no_grad()
def vae_latents(pipe: Any, frames: np.ndarray) -> torch.Tensor:
    """The pipeline's VAE encoding (posterior mode) of (F,H,W,3) frames: as a batch of images,
    or as one clip (1,3,F,H,W) for a video VAE that takes no images."""
    vae = getattr(pipe, "vae", None)
    if vae is None:
        raise InputError(f"{type(pipe).__name__} exposes neither its latents nor a VAE to measure them with")
    param = next(vae.parameters())
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).to(param) * 2 - 1
    try:
        z = vae.encode(x).latent_dist.mode()
    except (RuntimeError, ValueError, TypeError):
        z = vae.encode(x.permute(1, 0, 2, 3)[None]).latent_dist.mode()
    return z.float().cpu()


# ---------------------------------------------------------------- comparing


def noise_control(original: np.ndarray, protected: np.ndarray, seed: int = 0) -> Tuple[np.ndarray, float]:
    """``(control, eps)``: seeded uniform noise in [-eps, eps] on the original, clipped to [0,1] and
    rounded to 8 bits, with ``eps`` the protection's L-inf distance (so its L-inf is at most eps)."""
    if original.shape != protected.shape:
        raise InputError(f"original {original.shape[1]}x{original.shape[0]} and protected "
                         f"{protected.shape[1]}x{protected.shape[0]} differ in size")
    eps = float(np.abs(protected.astype(np.int16) - original.astype(np.int16)).max()) / 255
    noise = np.random.default_rng(seed).uniform(-eps, eps, original.shape)
    control = np.clip(original / 255.0 + noise, 0.0, 1.0)
    return np.round(control * 255).astype(np.uint8), eps


def compare_generations(a: Generation, b: Generation) -> dict:
    """Per-frame PSNR/SSIM of ``b`` against ``a`` (mean and per frame; PSNR null: identical) and
    the latent distance (relative L2) and RMSE."""
    from mmvgm.attacks.quality import image_metrics, json_number

    if a.frames.shape != b.frames.shape or a.latents.shape != b.latents.shape:
        raise InputError(f"the two generations differ in shape: {a.frames.shape} vs {b.frames.shape}")
    per = [image_metrics(fa, fb) for fa, fb in zip(a.frames, b.frames)]
    diff = (b.latents - a.latents).double()
    norm = float(a.latents.double().norm())
    distance = float(diff.norm()) / norm if norm > 0 else float(diff.norm())
    return {"psnr": {"mean": json_number(float(np.mean([m["psnr"] for m in per]))),
                     "per_frame": [json_number(m["psnr"]) for m in per]},
            "ssim": {"mean": json_number(float(np.mean([m["ssim"] for m in per]))),
                     "per_frame": [json_number(m["ssim"]) for m in per]},
            "latent_distance": json_number(distance), "latent_rmse": json_number(float(diff.pow(2).mean().sqrt()))}


def _beats(prot: dict, ctrl: dict) -> Dict[str, bool]:
    """Whether the protection changes the video more than the control, per measure."""
    def psnr(entry):  # null (identical) is an infinite PSNR: no change at all
        return math.inf if entry["psnr"]["mean"] is None else entry["psnr"]["mean"]

    def ssim(entry):
        return 1.0 if entry["ssim"]["mean"] is None else entry["ssim"]["mean"]

    return {"psnr": psnr(prot) < psnr(ctrl), "ssim": ssim(prot) < ssim(ctrl),
            "latent": (prot["latent_distance"] or 0.0) > (ctrl["latent_distance"] or 0.0)}


def generation_effects(pipe: Any, original: np.ndarray, protected: Sequence[np.ndarray],
                       settings: GenerationSettings = GenerationSettings(),
                       on_run: Optional[RunHook] = None) -> List[dict]:
    """One report per protected image: its generated video against the original's, the same for
    its noise control, and ``beats_control`` (true when the protection changes the video more
    than the control by every measure: lower mean PSNR and SSIM, larger latent distance)."""
    hook = on_run or (lambda name, total: (lambda: None))

    def run(name: str, image: np.ndarray) -> Generation:
        return generate(pipe, image, settings, hook(name, settings.steps))

    reference = run("generate original", original)
    reports = []
    for i, prot in enumerate(protected):
        control, eps = noise_control(original, prot, settings.seed)
        tag = "" if len(protected) == 1 else f" {i + 1}"
        prot_cmp = compare_generations(reference, run(f"generate protected{tag}", prot))
        ctrl_cmp = compare_generations(reference, run(f"generate control{tag}", control))
        by = _beats(prot_cmp, ctrl_cmp)
        reports.append({"pipeline": type(pipe).__name__, "settings": _settings(pipe, settings, original),
                        "latent_source": reference.latent_source, "eps": eps, "protected": prot_cmp,
                        "control": {**ctrl_cmp, "kind": "uniform noise in [-eps, eps], 8-bit", "seed": settings.seed},
                        "beats_control": all(by.values()), "beats_control_by": by})
    return reports


def _settings(pipe: Any, settings: GenerationSettings, image: np.ndarray) -> dict:
    height, width = settings.working_size(*image.shape[:2])
    params = inspect.signature(pipe.__call__).parameters
    passed = sorted(list(call_options(pipe, settings, height, width)) + (["generator"] if "generator" in params else []))
    return {**{k: v for k, v in asdict(settings).items() if k != "size"}, "height": height, "width": width,
            "passed": passed}


def parse_size(value: Union[str, None]) -> Optional[Tuple[int, int]]:
    """``"480x832"`` (height x width) -> (480, 832); None stays None."""
    if value is None:
        return None
    from mmvgm.attacks.budget import parse_positive_int

    parts = str(value).lower().split("x")
    if len(parts) != 2:
        raise InputError(f"size '{value}' must be HEIGHTxWIDTH, e.g. 480x832")
    return parse_positive_int(parts[0], "height"), parse_positive_int(parts[1], "width")


def pipeline_spec_exists(spec: str, what: str) -> None:
    """InputError now (before anything loads) when ``spec`` is neither a folder nor a hub id."""
    from mmvgm.checkpoint.hub import is_hub_id

    if not Path(spec).expanduser().is_dir() and not is_hub_id(spec):
        raise InputError(f"{what}: pipeline folder not found (a diffusers folder or a hub id org/name)", spec)
