"""Predicted-x0 trajectories: record them from a diffusers pipeline, or import the research files.

* :class:`TrajectoryRecorder` wraps a pipeline scheduler's ``step()`` and keeps, for every
  denoising step, the scheduler's own ``pred_original_sample`` of that step (the research code
  recomputed x0 from the latents *after* the update, which mixes two timesteps).
* :func:`import_research` converts the UVD research ``pred_x0.pth`` (N, steps, 4, F, H, W) and
  its 5-column label CSV into a :class:`~mmvgm.lvd.store.TrajectoryStore`.
"""
from __future__ import annotations

import csv
import functools
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

import torch

from mmvgm.errors import DecodeError, InputError, PathLike
from mmvgm.lvd.store import DEFAULT_LABELS, TrajectoryStore, TrajectoryWriter, category_names
from mmvgm.progress import track


# ----------------------------------------------------------------------------------- recording
class TrajectoryRecorder:
    """Capture x0 at every denoising step of a diffusers pipeline.

    ``with TrajectoryRecorder(pipe) as rec: pipe(prompt, ...)`` then ``rec.trajectory()`` is a
    float16 CPU tensor ``(steps, B, C, F, H, W)`` and ``rec.timesteps`` the matching timesteps.
    ``listeners`` are called as ``fn(step_index, timestep, x0)`` with the x0 of each step as
    soon as the scheduler produced it (``LatentGuard`` uses this). ``keep=False`` stores nothing.

    Schedulers that return ``pred_original_sample`` (DDIM, DDPM, Euler, ...) give it directly; for
    others x0 is derived from the model output and the *pre-update* sample with the scheduler's
    ``alphas_cumprod`` (epsilon / v-prediction / sample parameterisations).
    """

    def __init__(self, pipe: Any, keep: bool = True, dtype: torch.dtype = torch.float16) -> None:
        scheduler = getattr(pipe, "scheduler", None)
        if scheduler is None or not hasattr(scheduler, "step"):
            raise InputError("the pipeline has no scheduler with a step() method")
        self.pipe = pipe
        self.scheduler = scheduler
        self.keep = keep
        self.dtype = dtype
        self.listeners: List[Callable[[int, Any, torch.Tensor], None]] = []
        self.steps: List[torch.Tensor] = []
        self.timesteps: List[int] = []
        self.last_x0: Optional[torch.Tensor] = None
        self._original = None
        self._shadowed = None  # an instance-level step() someone installed before us
        self._index = 0

    # -- hooking
    def attach(self) -> "TrajectoryRecorder":
        if self._original is not None:
            return self
        self._shadowed = self.scheduler.__dict__.get("step")
        self._original = self.scheduler.step
        original = self._original

        @functools.wraps(original)
        def step(model_output, timestep, sample, *args, **kwargs):
            return_dict = kwargs.pop("return_dict", True)
            out = original(model_output, timestep, sample, *args, return_dict=True, **kwargs)
            x0 = getattr(out, "pred_original_sample", None)
            if x0 is None:
                x0 = _x0_from_output(self.scheduler, model_output, timestep, sample)
            self._record(timestep, x0)
            return out if return_dict else out.to_tuple()

        self.scheduler.step = step
        return self

    def detach(self) -> None:
        if self._original is not None:
            # the wrapper lives in the instance dict: removing it restores the class method
            self.scheduler.__dict__.pop("step", None)
            if self._shadowed is not None:
                self.scheduler.step = self._shadowed
            self._original = self._shadowed = None

    def __enter__(self) -> "TrajectoryRecorder":
        self.reset()
        return self.attach()

    def __exit__(self, *exc) -> None:
        self.detach()

    def reset(self) -> None:
        self.steps, self.timesteps, self.last_x0, self._index = [], [], None, 0

    def _record(self, timestep: Any, x0: torch.Tensor) -> None:
        x0 = x0.detach()
        self.last_x0 = x0
        t = int(timestep.item() if torch.is_tensor(timestep) else timestep)
        self.timesteps.append(t)
        if self.keep:
            self.steps.append(x0.to("cpu", self.dtype))
        for listener in self.listeners:
            listener(self._index, t, x0)
        self._index += 1

    # -- results
    def trajectory(self) -> torch.Tensor:
        """``(steps, B, ...)`` float16 on CPU: one x0 per denoising step that ran."""
        if not self.steps:
            raise InputError("no denoising step was recorded (did the pipeline run?)")
        return torch.stack(self.steps)


def _x0_from_output(scheduler: Any, model_output: torch.Tensor, timestep: Any,
                    sample: torch.Tensor) -> torch.Tensor:
    alphas = getattr(scheduler, "alphas_cumprod", None)
    if alphas is None:
        raise InputError(f"{type(scheduler).__name__} exposes neither pred_original_sample nor "
                         "alphas_cumprod; record with a DDIM scheduler (--scheduler ddim)")
    t = int(timestep.item() if torch.is_tensor(timestep) else timestep)
    a = alphas[t].to(sample.device, torch.float32)
    s, m = sample.float(), model_output.float()
    kind = scheduler.config.get("prediction_type", "epsilon")
    if kind == "epsilon":
        x0 = (s - (1 - a).sqrt() * m) / a.sqrt()
    elif kind == "v_prediction":
        x0 = a.sqrt() * s - (1 - a).sqrt() * m
    elif kind == "sample":
        x0 = m
    else:
        raise InputError(f"cannot derive x0 for prediction_type '{kind}'")
    return x0.to(sample.dtype)


def read_prompts(path: PathLike) -> List[str]:
    """One prompt per line; blank lines and lines starting with '#' are skipped."""
    path = Path(path)
    if not path.is_file():
        raise InputError("prompts file not found", path)
    prompts = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    prompts = [p for p in prompts if p and not p.startswith("#")]
    if not prompts:
        raise InputError("the prompts file holds no prompt", path)
    return prompts


SCHEDULERS = {"ddim": "DDIMScheduler", "keep": None}


def load_pipeline(pipeline_dir: PathLike, scheduler: str = "ddim", device: Optional[str] = None) -> Any:
    """A diffusers pipeline from a local directory, or a hub id the user named (its components'
    configs and safetensors weights are fetched into the HF cache); DDIM by default, as in the research."""
    import diffusers

    from mmvgm.checkpoint.hub import resolve_pipeline
    from mmvgm.errors import CheckpointError
    from mmvgm.progress import library_bars_off
    from mmvgm.runtime import pick_device

    pipeline_dir = resolve_pipeline(pipeline_dir)
    if not (pipeline_dir / "model_index.json").is_file():
        raise InputError("not a diffusers pipeline directory (no model_index.json)", pipeline_dir)
    if scheduler not in SCHEDULERS:
        raise InputError(f"unknown scheduler '{scheduler}'; choose from {', '.join(SCHEDULERS)}")
    dev = pick_device(device)
    dtype = torch.float16 if dev.type == "cuda" else torch.float32
    try:
        with library_bars_off():
            pipe = diffusers.DiffusionPipeline.from_pretrained(str(pipeline_dir), local_files_only=True,
                                                               torch_dtype=dtype)
    except (OSError, ValueError, EnvironmentError) as exc:
        raise CheckpointError(f"cannot load the pipeline: {' '.join(str(exc).split())[:300]}",
                              pipeline_dir) from None
    if SCHEDULERS[scheduler]:
        cls = getattr(diffusers, SCHEDULERS[scheduler])
        pipe.scheduler = cls.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(dev)


def record_prompts(pipeline_dir: PathLike, prompts_file: PathLike, out: PathLike,
                   labels_csv: Optional[PathLike] = None, steps: int = 50, frames: int = 16,
                   seed: int = 0, height: Optional[int] = None, width: Optional[int] = None,
                   guidance_scale: float = 7.5, scheduler: str = "ddim", labels: str = DEFAULT_LABELS,
                   device: Optional[str] = None, progress: bool = True, pipe: Any = None) -> TrajectoryStore:
    """Generate every prompt with the local pipeline and store its x0 trajectory (resumable).

    Prompt ``i`` gets id ``p{i:05d}`` and seed ``seed + i``; ``labels_csv`` uses the research
    5-column format with prompt indices (no CSV: every prompt is normal).
    """
    if steps < 1 or frames < 1:
        raise InputError("--steps and --frames must be positive")
    prompts = read_prompts(prompts_file)
    categories = category_names(labels)
    per_prompt = (read_category_csv(labels_csv, len(prompts), categories) if labels_csv
                  else [[] for _ in prompts])
    pipe = pipe if pipe is not None else load_pipeline(pipeline_dir, scheduler, device)
    info = {"source": "lvd-record", "pipeline": str(pipeline_dir), "pipeline_class": type(pipe).__name__,
            "scheduler": type(pipe.scheduler).__name__, "scheduler_config": dict(pipe.scheduler.config),
            "steps": steps, "frames": frames, "guidance_scale": guidance_scale, "label_set": labels}
    size = {k: v for k, v in (("height", height), ("width", width)) if v}
    writer = TrajectoryWriter(out, categories, info)
    recorder = TrajectoryRecorder(pipe)
    with writer:
        for i in track(range(len(prompts)), "recording", disable=not progress):
            vid = f"p{i:05d}"
            if writer.has(vid):
                continue
            generator = torch.Generator(device="cpu").manual_seed(seed + i)
            with recorder:
                pipe(prompts[i], num_frames=frames, num_inference_steps=steps, guidance_scale=guidance_scale,
                     output_type="latent", generator=generator, **size)
            writer.add(vid, recorder.trajectory()[:, 0], per_prompt[i], prompt=prompts[i], seed=seed + i,
                       timesteps=list(recorder.timesteps), scheduler=type(pipe.scheduler).__name__,
                       pipeline=type(pipe).__name__)
    return TrajectoryStore(out)


# ------------------------------------------------------------------------------ research import
def read_category_csv(path: PathLike, num_videos: int, categories: Sequence[str]) -> List[List[str]]:
    """The research label CSV: column k lists the indices of the videos in category k.

    Empty cells are allowed (columns have different lengths); a video may appear in several
    columns; a first row with non-numeric cells is a header and skipped. Returns, per video,
    the list of its categories (empty = in no category).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError("label CSV not found", path)
    labels: List[List[str]] = [[] for _ in range(num_videos)]
    with open(path, newline="", encoding="utf-8-sig") as fh:
        rows = list(csv.reader(fh))
    for row_no, row in enumerate(rows, 1):
        cells = [c.strip() for c in row]
        if not any(cells):
            continue
        if row_no == 1 and any(c and _as_index(c) is None for c in cells):
            continue  # header
        if len([c for c in cells[len(categories):] if c]):
            raise InputError(f"row {row_no} has {len(cells)} columns; the label CSV has one "
                             f"column per category ({len(categories)}: {', '.join(categories)})", path)
        for col, cell in enumerate(cells[:len(categories)]):
            if not cell:
                continue
            index = _as_index(cell)
            if index is None:
                raise InputError(f"row {row_no}, column {col + 1}: '{cell}' is not a video index", path)
            if not 0 <= index < num_videos:
                raise InputError(f"row {row_no}, column {col + 1}: video index {index} is out of range "
                                 f"(the trajectory file holds {num_videos} videos: 0..{num_videos - 1})", path)
            if categories[col] not in labels[index]:
                labels[index].append(categories[col])
    return labels


def _as_index(cell: str) -> Optional[int]:
    try:
        value = float(cell)  # pandas writes integer columns with gaps as 12.0
    except ValueError:
        return None
    return int(value) if value.is_integer() else None


def safe_torch_load(path: PathLike, what: str, mmap: bool = False) -> Any:
    """``torch.load(weights_only=True)``: tensors and plain containers only, never arbitrary pickle."""
    path = Path(path)
    if not path.is_file():
        raise InputError("file not found", path)
    try:
        try:
            return torch.load(str(path), map_location="cpu", weights_only=True, mmap=mmap)
        except RuntimeError as exc:
            if not mmap or "mmap" not in str(exc):  # legacy (non-zip) files cannot be mapped
                raise
            return torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for damaged files
        if "Weights only load failed" in str(exc):
            raise DecodeError(f"the {what} holds pickled Python objects, not only tensors; refusing to "
                              "unpickle it (re-save it with plain tensors, lists and dicts)", path) from None
        reason = " ".join(str(exc).split())[:200]
        raise DecodeError(f"cannot read the {what} (truncated or not a torch file?): {reason}", path) from None


def load_research_tensor(path: PathLike) -> torch.Tensor:
    """``pred_x0.pth`` as a (memory-mapped where possible) tensor (N, steps, C, F, H, W)."""
    obj = safe_torch_load(path, "trajectory file", mmap=True)
    if isinstance(obj, (list, tuple)) and obj and all(torch.is_tensor(t) for t in obj):
        obj = torch.stack(list(obj))
    if not torch.is_tensor(obj) or obj.ndim != 6:
        shape = tuple(obj.shape) if torch.is_tensor(obj) else type(obj).__name__
        raise InputError(f"expected a tensor (videos, steps, channels, frames, height, width), got {shape}", path)
    return obj


def import_research(pred_x0: PathLike, labels_csv: PathLike, out: PathLike,
                    normal: Optional[PathLike] = None, labels: str = DEFAULT_LABELS,
                    progress: bool = True) -> TrajectoryStore:
    """Convert the research files into a store at ``out`` (float16, one file per video).

    Videos of ``pred_x0`` get ids ``u00000...`` and the categories listed for them in the CSV
    (an unlisted video is normal); videos of ``normal`` get ids ``n00000...`` and no category.
    """
    categories = category_names(labels)
    main = load_research_tensor(pred_x0)
    per_video = read_category_csv(labels_csv, main.shape[0], categories)
    sources = [(main, "u", per_video, Path(pred_x0))]
    if normal is not None:
        extra = load_research_tensor(normal)
        if tuple(extra.shape[1:]) != tuple(main.shape[1:]):
            raise InputError(f"normal trajectories have shape {tuple(extra.shape[1:])} per video, "
                             f"the unsafe ones {tuple(main.shape[1:])}", normal)
        sources.append((extra, "n", [[] for _ in range(extra.shape[0])], Path(normal)))
    info = {"source": "research-import", "pred_x0": str(pred_x0), "labels_csv": str(labels_csv),
            "normal": None if normal is None else str(normal), "label_set": labels}
    writer = TrajectoryWriter(out, categories, info)
    total = sum(t.shape[0] for t, *_ in sources)
    items = ((t, p, lab, src, i) for t, p, lab, src in sources for i in range(t.shape[0]))
    with writer:
        for tensor, prefix, video_labels, src, i in track(items, "importing", total=total, disable=not progress):
            vid = f"{prefix}{i:05d}"
            if writer.has(vid):
                continue
            writer.add(vid, tensor[i], video_labels[i], source=src.name, index=i)
    return TrajectoryStore(out)


def summarize(store: TrajectoryStore) -> Dict[str, Any]:
    """Counts per category, normal and total: printed by the CLI after record/import."""
    counts = {c: 0 for c in store.categories}
    for v in store.videos:
        for c in v.labels:
            counts[c] += 1
    return {"videos": len(store), "normal": sum(1 for v in store.videos if not v.unsafe),
            "unsafe": sum(1 for v in store.videos if v.unsafe), "per_category": counts,
            "shape": store.shape, "root": str(store.root)}
