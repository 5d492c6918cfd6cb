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
the clip = full colour), so frames can be compared. Each frame is labelled with its index in
the video and its time (index / fps), and the title names the frames the clip spans. Not a
proof of manipulation: a hint of where the model looked.
"""
from __future__ import annotations

import errno
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, List, Optional, Sequence, Tuple

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
    indices: Tuple[int, ...] = ()   # the video's frame index of each of ``frames``
    fps: Optional[float] = None     # the video's average rate (None for a frame directory)


def check_output(out: PathLike) -> Path:
    """``out`` as a Path if a PNG can be written there, else an ``InputError`` saying why; the
    CLI calls it before any work, so a bad ``--explain`` fails at once and creates nothing."""
    out = Path(out)
    if out.suffix.lower() != ".png":
        raise InputError("the saliency map is written as PNG: use a .png file name", out)
    if out.is_dir():
        raise InputError("is a folder: give a .png file name", out)
    folder = out.parent
    if not folder.exists():
        raise InputError("no such folder (create it first)", folder)
    if not folder.is_dir():
        raise InputError("not a folder", folder)
    if not os.access(folder, os.W_OK | os.X_OK):
        raise InputError("folder is not writable", folder)
    # Root passes os.access everywhere, and some folders (/proc) refuse new files to anyone:
    # only creating one tells.
    try:
        fd, probe = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".check", dir=folder)
    except OSError as exc:  # the folder exists, so ENOENT here means it takes no new files
        why = "" if exc.errno == errno.ENOENT else f" ({exc.strerror or exc})"
        raise InputError(f"cannot create files in this folder{why}", folder) from None
    os.close(fd)
    os.unlink(probe)
    return out


def frame_labels(indices: Sequence[int], fps: Optional[float] = None, padded: int = 0) -> List[str]:
    """One label per frame: its index in the video and, with ``fps``, its time; the last
    ``padded`` frames (a short video's last frame repeated) say so."""
    labels = []
    for row, index in enumerate(indices):
        label = f"frame {int(index)}"
        if fps:
            label += f"\n{_clock(int(index) / fps)}"
        if row >= len(indices) - padded:
            label += " (repeat)"
        labels.append(label)
    return labels


def clip_title(indices: Sequence[int], fps: Optional[float] = None, padded: int = 0,
               window: Optional[str] = None) -> str:
    """What the clip spans, e.g. ``frames 41–48, 1.64–1.92 s (window 3 of 4, most likely fake)``;
    ``window`` says which window it is, when the video was scored in several."""
    real = [int(i) for i in indices[:len(indices) - padded]] or [int(indices[0])]
    first, last = real[0], real[-1]
    text = f"frames {first}–{last}" if last != first else f"frame {first}"
    if fps:
        text += f", {_times(first / fps, last / fps)}"
    notes = [f"{len(real)} sampled"] if any(b - a != 1 for a, b in zip(real, real[1:])) else []
    if padded:
        notes.append(f"last frame repeated {padded}x")
    if window:
        notes.append(window)
    return text + (f" ({', '.join(notes)})" if notes else "")


def _clock(seconds: float) -> str:
    """``1.64 s`` under a minute, ``2:05.40`` from there."""
    return f"{seconds:.2f} s" if seconds < 60 else _minutes(seconds)


def _minutes(seconds: float) -> str:
    return f"{int(seconds // 60)}:{seconds % 60:05.2f}"


def _times(first: float, last: float) -> str:
    """``1.64–1.92 s`` (one unit for the range), ``2:05.40–2:05.68``, or one time."""
    if last == first:
        return _clock(first)
    if last < 60:
        return f"{first:.2f}–{last:.2f} s"
    return f"{_minutes(first)}–{_minutes(last)}"


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
           columns: int = 8, alpha: float = 0.5, protect: Optional[PathLike] = None,
           labels: Optional[Sequence[str]] = None) -> Path:
    """PNG grid: every frame with the saliency overlaid, titled by ``labels`` (default ``frame
    0``, ``frame 1``...; see :func:`frame_labels`). matplotlib's Agg canvas, no global backend
    or pyplot state; written atomically."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from mmvgm.io.atomic import atomic_path

    out = Path(out)
    if out.suffix.lower() != ".png":
        raise InputError("the explanation is written as PNG: use a .png file name", out)
    t = len(frames)
    if labels is not None and len(labels) != t:
        raise InputError(f"{len(labels)} labels for {t} frames")
    cols = min(columns, t)
    rows = (t + cols - 1) // cols
    # Constrained layout leaves room for a title of several lines above the frames' labels.
    title_height = 0.25 * (title.count("\n") + 1) if title else 0.0
    fig = Figure(figsize=(2.0 * cols, 2.0 * rows + title_height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, cols, squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if i >= t:
            continue
        ax.imshow(frames[i])
        ax.imshow(saliency[i], cmap="jet", alpha=alpha * saliency[i] ** 0.5, vmin=0.0, vmax=1.0)
        ax.set_title(f"frame {i}" if labels is None else labels[i], fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    try:
        with atomic_path(out, protect=protect) as tmp:
            fig.savefig(tmp, format="png")
    except OSError as exc:  # a full disk or a folder that refuses files: one line, not a traceback
        raise InputError(f"cannot write the PNG ({exc.strerror or exc})", out) from None
    return out


def explain(predictor: Any, video: PathLike, out: PathLike, frames: Optional[int] = None,
            sampling: Optional[str] = None, target: Optional[str] = None,
            method: str = "grad_x_input", samples: int = 8, start: int = 0,
            window: Optional[str] = None) -> Explanation:
    """Saliency of ``predictor``'s score for the clip of ``video`` that starts at frame ``start``,
    saved as a PNG grid at ``out``: each frame labelled with its index and time in the video,
    the title naming the frames (and ``window``, e.g. ``"window 3 of 4, most likely fake"``)."""
    from mmvgm.io import probe

    pixels, clip = predictor.load_clip(video, frames, sampling, start=start)
    if pixels.shape[-3] != 3:
        raise InputError("saliency overlays need RGB input (3 channels)", video)
    sal, name = saliency_map(predictor, pixels, target=target, method=method, samples=samples)
    shown = pixels.permute(0, 2, 3, 1).cpu().numpy()
    indices = tuple(int(i) for i in clip.indices)
    padded = int(getattr(clip, "padded", 0))
    fps = probe(video, **getattr(predictor, "limits", {})).fps
    what = "P(fake)" if name == "detect" else f"source '{name}'"
    label = "gradient x input" if method == "grad_x_input" else f"SmoothGrad (n={samples}) x input"
    title = f"{label} saliency for {what}: {Path(video).name}\n{clip_title(indices, fps, padded, window)}"
    path = render(shown, sal, out, title=title, protect=video, labels=frame_labels(indices, fps, padded))
    return Explanation(path=path, video=str(video), target=name, method=method, saliency=sal,
                       frames=shown, indices=indices, fps=fps)


def explain_verdict(predictor: Any, video: PathLike, out: PathLike, verdict: Any, frames: Optional[int] = None,
                    sampling: Optional[str] = None) -> str:
    """Write the saliency PNG of ``verdict``'s most suspicious window (of its one clip without
    windows), naming the window in its title; returns the PNG's path (``trace --explain``)."""
    window = most_suspicious_window(verdict)
    if window is None:
        return str(explain(predictor, video, out, frames=frames, sampling=sampling, start=0).path)
    number = next(i for i, w in enumerate(verdict.windows, start=1) if w is window)
    why = "most likely fake" if window.fake_probability is not None else "most confident source"
    return str(explain(predictor, video, out, frames=frames, sampling=window.sampling, start=window.start,
                       window=f"window {number} of {len(verdict.windows)}, {why}").path)


def most_suspicious_window(verdict: Any) -> Any:
    """The window with the highest fake probability (top source probability for trace-only
    checkpoints); ``None`` (the first clip) without windows."""
    def score(window: Any) -> float:
        if window.fake_probability is not None:
            return window.fake_probability
        return window.best_source.probability if window.best_source else 0.0
    return max(verdict.windows or [], key=score, default=None)
