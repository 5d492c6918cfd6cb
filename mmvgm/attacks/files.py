"""Protect image files: folders, output naming, batches, lossless atomic writing, reports.

The library behind ``mmvgm protect``; one bad image is reported and the rest continue.
Images of one size are attacked as one batch (``batch_size`` at a time); each image's result
is what protecting it alone gives (see :func:`mmvgm.attacks.protect`).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

from mmvgm.errors import InputError, MMVGMError, PathLike

PROTECTED_SUFFIX = ".protected.png"
StepCallback = Callable[[int, float], None]


@dataclass
class Inputs:
    """What :func:`expand_inputs` makes of the paths given: ``images`` (files as given, each
    folder's images in natural order), ``skipped`` (folder -> names left out: not images, earlier
    outputs, sub-folders) and ``errors`` (folder -> why it gives no image)."""
    images: List[Path] = field(default_factory=list)
    skipped: Dict[Path, List[str]] = field(default_factory=dict)
    errors: Dict[Path, str] = field(default_factory=dict)


def expand_inputs(paths: Sequence[PathLike]) -> Inputs:
    """Folders become the images inside (not recursive; hidden files and earlier
    ``*.protected.png`` outputs left out); any other path, existing or not, stays as given."""
    from mmvgm.io.frames_dir import natural_key
    from mmvgm.io.paths import IMAGE_EXTENSIONS

    found = Inputs()
    for path in map(Path, paths):
        if not path.is_dir():
            found.images.append(path)
            continue
        entries = sorted((e for e in path.iterdir() if not e.name.startswith(".")), key=lambda e: natural_key(e.name))
        images = [e for e in entries if e.is_file() and e.suffix.lower() in IMAGE_EXTENSIONS
                  and not e.name.endswith(PROTECTED_SUFFIX)]
        skipped = [e.name + ("/" if e.is_dir() else "") for e in entries if e not in images]
        if skipped:
            found.skipped[path] = skipped
        if not images:
            found.errors[path] = f"folder has no images ({', '.join(IMAGE_EXTENSIONS)})"
        found.images.extend(images)
    return found


def default_batch_size(device) -> int:
    """Images per batch when none is asked for: 8 on a GPU, 4 on the CPU (where a batch saves
    less: the cores are busy with one image already)."""
    import torch

    return 8 if torch.device(device).type == "cuda" else 4


def output_paths(inputs: Sequence[PathLike], out: Optional[PathLike] = None,
                 target: Optional[PathLike] = None) -> List[Path]:
    """Where each protected image goes: ``<stem>.protected.png`` beside its input or in ``out``.

    ``out`` is a directory (created when written to), or a ``.png`` path for a single input.
    Two inputs that would write the same file, or an output that is an input or the
    ``target``, are refused.
    """
    inputs = [Path(p) for p in inputs]
    if out is None:
        outs = [p.with_name(p.stem + PROTECTED_SUFFIX) for p in inputs]
    else:
        out = Path(out).expanduser()
        if out.suffix.lower() == ".png" and not out.is_dir():
            if len(inputs) != 1:
                raise InputError("--out is a .png file but there are several inputs; give a directory", out)
            outs = [out]
        elif out.suffix.lower() in (".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif") and not out.is_dir():
            raise InputError("protected images are written as lossless PNG; use a .png path or a directory", out)
        else:
            if out.exists() and not out.is_dir():
                raise InputError("--out exists and is not a directory", out)
            outs = [out / (p.stem + PROTECTED_SUFFIX) for p in inputs]
    seen: Dict[str, Path] = {}
    for src, dst in zip(inputs, outs):
        key = os.path.normcase(os.path.abspath(dst))
        if key in seen and os.path.abspath(seen[key]) != os.path.abspath(src):
            raise InputError(f"{seen[key]} and {src} would both be written to {dst}; use separate --out folders")
        seen[key] = src
    for dst in outs:  # any input, not only its own: a.protected.png may be the next input
        refuse_input(dst, inputs + ([Path(target)] if target is not None else []))
    return outs


def refuse_input(dest: PathLike, inputs: Sequence[PathLike]) -> None:
    """InputError if writing ``dest`` would overwrite one of ``inputs``."""
    dest = Path(dest)
    key = os.path.normcase(os.path.abspath(dest))
    for src in map(Path, inputs):
        if key == os.path.normcase(os.path.abspath(src)) or (dest.exists() and src.exists()
                                                              and os.path.samefile(dest, src)):
            raise InputError("refusing to overwrite the input file; choose another output path", dest)


def protect_files(inputs: Sequence[PathLike], encoder, target: Optional[PathLike] = None,
                  out: Optional[PathLike] = None, lpips=None,
                  on_image: Optional[Callable[[Path, int], Optional[StepCallback]]] = None,
                  config: PathLike = "default", batch_size: Optional[int] = None,
                  on_batch: Optional[Callable[[List[Path], int], Optional[StepCallback]]] = None,
                  **options) -> Iterator[dict]:
    """Protect image files and folders (:func:`expand_inputs`); yields one report per image
    (``{"path", "error"}`` for a bad one, or a folder without images).

    Images of one size go through the attack ``batch_size`` at a time (default
    :func:`default_batch_size`); a batch that runs out of GPU memory is split. Reports come
    as batches finish: errors first, then by size group in the order of each group's first image.
    ``config`` and ``options``: as for :func:`mmvgm.attacks.protect` (eps, steps, step_size, ...).
    ``on_batch(paths, steps)`` and ``on_image(path, steps)`` (for each image of the batch) may
    return a per-step callback (progress bars); every callback sees its batch's steps.
    """
    from functools import partial

    from mmvgm.attacks.budget import parse_positive_int
    from mmvgm.attacks.protect import protect
    from mmvgm.io.image import read_image

    _, opts = resolve_options(config, **options)  # bad options are refused before any image is read
    size = default_batch_size(encoder.device) if batch_size is None else parse_positive_int(batch_size, "batch size")
    found = expand_inputs(inputs)
    target_image = read_image(target) if target is not None else None
    outs = dict(zip(found.images, output_paths(found.images, out, target)))
    for folder, message in found.errors.items():
        yield {"path": str(folder), "error": message}
    groups: Dict[Tuple[int, ...], List[Path]] = {}
    for src in found.images:
        try:  # decoded twice (here for the size, upright, and again in its batch): one batch in memory
            groups.setdefault(read_image(src).shape, []).append(src)
        except MMVGMError as exc:
            yield {"path": str(src), "error": exc.message}
    run = partial(protect, encoder=encoder, target=target_image, lpips=lpips, config=config, **options)
    for group in groups.values():
        for start in range(0, len(group), size):
            batch = group[start:start + size]
            extra = {"target": str(target)} if target else {}
            yield from _protect_batch(batch, [outs[p] for p in batch], run, (on_batch, on_image, opts.steps), extra)


def _protect_batch(srcs: List[Path], dsts: List[Path], run: Callable, hooks: tuple, extra: dict) -> Iterator[dict]:
    """Read, protect as one batch (``run``: :func:`protect` with the options bound), and write
    each image of ``srcs``; a report per image (``extra`` added to each)."""
    from mmvgm.io.image import read_image, write_image

    images, kept = [], []
    for src, dst in zip(srcs, dsts):
        try:
            image = read_image(src)
        except MMVGMError as exc:
            yield {"path": str(src), "error": exc.message}
            continue
        if images and image.shape != images[0].shape:  # the file changed since its size was read
            yield {"path": str(src), "error": "the image changed while it was being protected"}
            continue
        images.append(image)
        kept.append((src, dst))
    if not images:
        return
    try:
        results = _protect_split(images, [src for src, _ in kept], run, hooks)
    except MMVGMError as exc:
        for src, _ in kept:
            yield {"path": str(src), "error": exc.message}
        return
    for (src, dst), (protected, report) in zip(kept, results):
        try:
            write_image(dst, protected, protect=src)
        except MMVGMError as exc:
            yield {"path": str(src), "error": exc.message}
            continue
        yield {"path": str(src), "output": str(dst), **extra, **report}


def _protect_split(images: list, srcs: List[Path], run: Callable, hooks: tuple) -> list:
    """``[(protected, report)]`` for one batch; halved and retried when the GPU runs out of
    memory (a batch gives each image what it gives alone, so splitting keeps the pixels)."""
    import torch

    try:
        protected, reports = run(images, callback=_step_callback(hooks, srcs))
    except torch.cuda.OutOfMemoryError:
        if len(images) == 1:
            raise
        torch.cuda.empty_cache()
        half = len(images) // 2
        return _protect_split(images[:half], srcs[:half], run, hooks) + \
            _protect_split(images[half:], srcs[half:], run, hooks)
    return list(zip(protected, reports))


def _step_callback(hooks: tuple, srcs: List[Path]) -> Optional[StepCallback]:
    """One per-step callback for a batch from ``on_batch`` and each image's ``on_image``."""
    on_batch, on_image, steps = hooks
    found = ([on_batch(list(srcs), steps)] if on_batch is not None else []) + \
        ([on_image(src, steps) for src in srcs] if on_image is not None else [])
    callbacks = [c for c in found if c is not None]
    if not callbacks:
        return None

    def every(step: int, loss: float) -> None:
        for callback in callbacks:
            callback(step, loss)
    return every


def load_protection(cfg: dict, encoder: Optional[str] = None, model_path: Optional[PathLike] = None,
                    lpips_weights: Optional[PathLike] = None, device=None) -> tuple:
    """``(encoder, lpips_model, note)``: what ``mmvgm protect`` protects with for these options
    (``cfg`` from :func:`resolve_options`; no ``encoder`` and no ``model_path``: the config's
    encoder, else guessed from ``model_path``); ``note`` says why LPIPS is off, or is None."""
    from mmvgm.attacks.encoders import build_encoder
    from mmvgm.attacks.quality import load_lpips

    name = encoder or (None if model_path else cfg.get("encoder", "svd"))
    built = build_encoder(name, model_path=model_path, device=device, **(cfg.get("encoder_options") or {}))
    lpips_model, note = load_lpips(lpips_weights, device=device)
    return built, lpips_model, note


def resolve_options(config: PathLike = "default", **options) -> tuple:
    """``(cfg, ProtectOptions)``: the protect config with non-None ``options`` over it, validated
    (so bad values are refused before any model is loaded)."""
    from mmvgm.attacks.protect import ProtectOptions
    from mmvgm.config import load_config, merge

    cfg = merge(load_config(config, "protect"), {k: v for k, v in options.items() if v is not None})
    return cfg, ProtectOptions.from_config(cfg)
