"""Protect image files: output naming, reading, protecting, lossless atomic writing, reports.

The library behind ``mmvgm protect``; one bad image is reported and the rest continue.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Sequence

from mmvgm.errors import InputError, MMVGMError, PathLike

PROTECTED_SUFFIX = ".protected.png"


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
                  on_image: Optional[Callable[[Path, int], Callable[[int, float], None]]] = None,
                  config: PathLike = "default", **options) -> Iterator[dict]:
    """Protect each image file; yields one report per input (``{"path", "error"}`` for a bad one).

    ``config`` and ``options``: as for :func:`mmvgm.attacks.protect` (eps, steps, step_size, ...).
    ``on_image(path, steps)`` may return a per-step callback (progress bars).
    """
    from mmvgm.attacks.protect import protect
    from mmvgm.io.image import read_image, write_image

    _, opts = resolve_options(config, **options)  # bad options are refused before any image is read
    target_image = read_image(target) if target is not None else None
    outs = output_paths(inputs, out, target)
    for src, dst in zip(inputs, outs):
        src = Path(src)
        try:
            image = read_image(src)
            callback = on_image(src, opts.steps) if on_image is not None else None
            protected, report = protect(image, encoder, target=target_image, lpips=lpips, callback=callback,
                                        config=config, **options)
            write_image(dst, protected, protect=src)
        except MMVGMError as exc:
            yield {"path": str(src), "error": exc.message}
            continue
        yield {"path": str(src), "output": str(dst), **({"target": str(target)} if target else {}), **report}


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
