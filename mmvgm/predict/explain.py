"""Saliency for one prediction: which pixels of the sampled frames pushed the score.

Method (gradient-based, model-agnostic, works for every backbone):

* ``grad_x_input`` (default): the gradient of the target logit with respect to the
  normalised input clip, multiplied by the input, summed over colour channels, absolute value
  (Shrikumar et al. 2016; "input x gradient"). One forward + one backward pass.
* ``smoothgrad``: the same, with the gradient averaged over ``samples`` copies of the input
  with Gaussian noise (sigma = ``noise`` x the input's value range) added (Smilkov et al.
  2017, SmoothGrad). Less speckled, ``samples`` times slower.

The target logit is the detection logit (evidence for "fake") for detect and joint
checkpoints, and the top-ranked source's logit for trace checkpoints; ``target=`` picks
``"detect"`` or a source label explicitly. Saliency is computed on exactly the frames the
model saw (after resize and crop) and shown on one shared colour scale (99th percentile of
the clip = full colour), so frames can be compared. Not a proof of manipulation: a hint
of where the model looked.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Tuple

import numpy as np
import torch

from mmvgm.errors import InputError, PathLike
from mmvgm.predict.scoring import autocast

METHODS = ("grad_x_input", "smoothgrad")


@dataclass
class Explanation:
    path: Path              # the PNG written
    video: str
    target: str             # "detect" or a source label
    method: str
    saliency: np.ndarray    # (T, S, S) float32, >= 0, max-normalised per clip
    frames: np.ndarray      # (T, S, S, 3) uint8: what the model saw


def saliency_map(predictor: Any, pixels: torch.Tensor, target: Optional[str] = None,
                 method: str = "grad_x_input", samples: int = 8, noise: float = 0.1,
                 seed: int = 0) -> Tuple[np.ndarray, str]:
    """(T, S, S) saliency for a uint8 clip (T,3,S,S) after the geometric transform.

    Returns the map and the name of the explained target.
    """
    if method not in METHODS:
        raise InputError(f"unknown saliency method '{method}'; use {' or '.join(METHODS)}")
    if samples < 1:
        raise InputError(f"samples must be >= 1 (got {samples})")
    model = predictor.model
    device = predictor.device
    x = predictor.transform.normalize(pixels[None].to(device))  # (1,T,3,S,S) float
    head, index, name = _target(predictor, x, target)
    generator = torch.Generator(device="cpu").manual_seed(seed)
    sigma = noise * float(x.max() - x.min())
    n = samples if method == "smoothgrad" else 1
    grad_sum = torch.zeros_like(x)
    was_training = model.training
    model.eval()
    try:
        for _ in range(n):
            xi = x.detach().clone()
            if method == "smoothgrad":
                xi = xi + sigma * torch.randn(xi.shape, generator=generator).to(device)
            xi.requires_grad_(True)
            with torch.enable_grad(), autocast(predictor.device, predictor.scorer.dtype):
                out = model(xi)[head]
                score = out.reshape(-1)[0] if index is None else out[0, index]
                (grad,) = torch.autograd.grad(score.float(), xi)
            grad_sum += grad.float()
    finally:
        model.train(was_training)
    attribution = (grad_sum / n * x).sum(dim=2).abs()[0]  # (T,S,S)
    sal = attribution.detach().float().cpu().numpy()
    scale = float(np.percentile(sal, 99)) or float(sal.max()) or 1.0
    return np.clip(sal / scale, 0.0, 1.0).astype(np.float32), name


def _target(predictor: Any, x: torch.Tensor, target: Optional[str]) -> Tuple[str, Optional[int], str]:
    """(head, class index or None, display name) of the logit to explain."""
    task = predictor.task
    if target in (None, "detect", "fake") and task in ("detect", "joint"):
        return "detect", None, "detect"
    if task == "detect":
        raise InputError(f"a detect-only checkpoint can only explain 'detect', not '{target}'")
    labels = predictor.source_labels
    if target is None or target == "trace":
        with torch.inference_mode(), autocast(predictor.device, predictor.scorer.dtype):
            logits = predictor.model(x)["trace"]
        index = int(logits[0].float().argmax())
        return "trace", index, labels[index]
    if target not in labels:
        raise InputError(f"unknown target '{target}'; use detect or one of: {', '.join(labels)}")
    return "trace", labels.index(target), target


def render(frames: np.ndarray, saliency: np.ndarray, out: PathLike, title: str = "",
           columns: int = 8, alpha: float = 0.5, protect: Optional[PathLike] = None) -> Path:
    """PNG grid: every frame with the saliency overlaid (matplotlib's Agg canvas, no global
    backend or pyplot state; written atomically)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from mmvgm.io.atomic import atomic_path

    out = Path(out)
    if out.suffix.lower() != ".png":
        raise InputError("the explanation is written as PNG: use a .png file name", out)
    t = len(frames)
    cols = min(columns, t)
    rows = (t + cols - 1) // cols
    fig = Figure(figsize=(2.0 * cols, 2.0 * rows + (0.5 if title else 0)), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, cols, squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if i >= t:
            continue
        ax.imshow(frames[i])
        ax.imshow(saliency[i], cmap="jet", alpha=alpha * saliency[i] ** 0.5, vmin=0.0, vmax=1.0)
        ax.set_title(f"frame {i}", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    with atomic_path(out, protect=protect) as tmp:
        fig.savefig(tmp, format="png")
    return out


def explain(predictor: Any, video: PathLike, out: PathLike, frames: Optional[int] = None,
            sampling: Optional[str] = None, target: Optional[str] = None,
            method: str = "grad_x_input", samples: int = 8, start: int = 0) -> Explanation:
    """Saliency of ``predictor``'s score for the clip of ``video`` that starts at frame ``start``,
    saved as a PNG grid at ``out``."""
    pixels, _ = predictor.load_clip(video, frames, sampling, start=start)
    if pixels.shape[-3] != 3:
        raise InputError("saliency overlays need RGB input (3 channels)", video)
    sal, name = saliency_map(predictor, pixels, target=target, method=method, samples=samples)
    shown = pixels.permute(0, 2, 3, 1).cpu().numpy()
    what = "P(fake)" if name == "detect" else f"source '{name}'"
    label = "gradient x input" if method == "grad_x_input" else f"SmoothGrad (n={samples}) x input"
    path = render(shown, sal, out, title=f"{label} saliency for {what}: {Path(video).name}",
                  protect=video)
    return Explanation(path=path, video=str(video), target=name, method=method, saliency=sal,
                       frames=shown)
