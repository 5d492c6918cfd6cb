"""Checkpoint directories: ``mmvgm.yaml`` + ``model.safetensors`` (+ resumable training state).

``save_checkpoint(dir, model, meta)`` and ``load_checkpoint(dir)`` are symmetric: the YAML
alone rebuilds the model (``mmvgm.models.build_model(meta["model_cfg"])``), the safetensors
file fills it strictly. Nothing is pickled: optimizer, scheduler and RNG state for
``--resume`` are split into tensors (``train_state.safetensors``) and JSON
(``train_state.json``) by ``pack_state``.

A directory is written into a temporary sibling and renamed into place; the previous
version is renamed aside first and deleted after, so a kill leaves either the old or the
new checkpoint complete (and at worst a ``.<name>.old-*`` folder behind).
"""
from __future__ import annotations

import copy
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Dict, Mapping, Optional, Tuple, Union

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from mmvgm.checkpoint.hub import HubFiles, resolve
from mmvgm.checkpoint.meta import CONFIG_NAME, FORMAT_VERSION, CheckpointMeta  # noqa: F401
from mmvgm.errors import CheckpointError, PathLike
from mmvgm.io.atomic import new_temp_dir

WEIGHTS_NAME = "model.safetensors"
METRICS_NAME = "metrics.json"
STATE_TENSORS = "train_state.safetensors"
STATE_JSON = "train_state.json"


# ----------------------------------------------------------------------------- save / load

def save_checkpoint(directory: PathLike, model: torch.nn.Module, meta: CheckpointMeta,
                    train_state: Optional[Dict[str, Any]] = None,
                    extra_files: Optional[Mapping[str, str]] = None) -> Path:
    """Write ``directory`` atomically: ``meta`` as ``mmvgm.yaml``, the weights as
    ``model.safetensors``; ``train_state`` is any nesting of dicts/lists/tensors/arrays/scalars
    (see ``pack_state``); ``extra_files``: ``{name: text}`` written beside them (a model card)."""
    if not isinstance(meta, CheckpointMeta):
        raise TypeError("save_checkpoint needs a CheckpointMeta")
    dest = Path(directory)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = new_temp_dir(dest.parent, prefix=f".{dest.name}.tmp-")
    try:
        meta.save(tmp)
        save_file(_state_tensors(model), str(tmp / WEIGHTS_NAME), metadata={"format": "pt"})
        if train_state is not None:
            tensors, skeleton = pack_state(train_state)
            save_file(tensors, str(tmp / STATE_TENSORS), metadata={"format": "pt"})
            (tmp / STATE_JSON).write_text(json.dumps(skeleton), encoding="utf-8")
        for name, text in (extra_files or {}).items():
            (tmp / Path(name).name).write_text(text, encoding="utf-8")
        for f in tmp.iterdir():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
        _swap_into_place(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


def save_pretrained(directory: PathLike, model: torch.nn.Module, meta: CheckpointMeta,
                    metrics: Optional[Mapping[str, Any]] = None, *, name: Optional[str] = None,
                    license: Optional[str] = None) -> Path:
    """A checkpoint ready to share as a hub repo: ``mmvgm.yaml``, ``model.safetensors``, a
    ``README.md`` model card (see ``checkpoint.card``) and, when given, eval's ``metrics.json``.
    ``load_checkpoint`` / ``Predictor.from_pretrained`` read it back."""
    from mmvgm.checkpoint.card import CARD_NAME, model_card

    extra = {CARD_NAME: model_card(meta, metrics, name=name, license=license)}
    if metrics:
        extra[METRICS_NAME] = json.dumps(dict(metrics), indent=2, default=str)
    return save_checkpoint(directory, model, meta, extra_files=extra)


def read_metrics(source: Optional[Union[PathLike, Mapping[str, Any]]]) -> Optional[Dict[str, Any]]:
    """Eval metrics from a ``metrics.json`` path, a checkpoint folder holding one, or a dict."""
    if source is None or isinstance(source, Mapping):
        return None if source is None else dict(source)
    path = Path(source).expanduser()
    if path.is_dir():
        path = path / METRICS_NAME
        if not path.is_file():
            return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"cannot read eval metrics ({type(exc).__name__})", path) from None
    if not isinstance(data, Mapping):
        raise CheckpointError("eval metrics must be a JSON object (mmvgm eval's metrics.json)", path)
    return dict(data)


def _swap_into_place(tmp: Path, dest: Path) -> None:
    old = None
    if dest.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.old-", dir=dest.parent))
        old.rmdir()
        os.replace(dest, old)
    os.replace(tmp, dest)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _state_tensors(model: torch.nn.Module) -> Dict[str, torch.Tensor]:
    # clone: safetensors refuses tensors that share storage (tied weights, views)
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}


#: What a checkpoint fetched from the hub needs (the card and metrics come along for the reader).
CHECKPOINT_FILES = HubFiles(required=(CONFIG_NAME, WEIGHTS_NAME), optional=("README.md", METRICS_NAME))


def locate_checkpoint(spec: PathLike, cache_dir: Optional[PathLike] = None) -> Path:
    """The local directory of checkpoint ``spec``: a path, or a hub id (``org/name[@revision]``)
    fetched into the Hugging Face cache (see ``mmvgm.checkpoint.hub``)."""
    return resolve(spec, CHECKPOINT_FILES, cache_dir=cache_dir)


def read_meta(directory: PathLike) -> CheckpointMeta:
    """The checkpoint's ``mmvgm.yaml`` (checks the directory is complete)."""
    directory = locate_checkpoint(directory)
    if not directory.is_dir():
        raise CheckpointError("checkpoint directory not found", directory)
    if not (directory / WEIGHTS_NAME).is_file():
        if not (directory / CONFIG_NAME).is_file():
            raise CheckpointError(f"not an mmvgm checkpoint: {CONFIG_NAME} is missing", directory)
        raise CheckpointError(f"incomplete checkpoint: {WEIGHTS_NAME} is missing", directory)
    return CheckpointMeta.load(directory)


def load_checkpoint(directory: PathLike, device: Any = "cpu",
                    builder: Optional[Callable[[dict], torch.nn.Module]] = None
                    ) -> Tuple[torch.nn.Module, CheckpointMeta]:
    """Rebuild the model from ``mmvgm.yaml`` and load ``model.safetensors`` strictly
    (``directory`` may be a hub id, see ``locate_checkpoint``)."""
    directory = locate_checkpoint(directory)
    meta = read_meta(directory)
    if builder is None:
        from functools import partial

        from mmvgm.models import build_model

        builder = partial(build_model, scoring=True)  # the checkpoint fills it: no initialisation
    model_cfg = copy.deepcopy(meta.model_cfg)
    if isinstance(model_cfg.get("backbone"), dict):
        model_cfg["backbone"]["weights"] = None  # the checkpoint replaces any pretrained weights
    model = builder(model_cfg)
    load_weights(model, directory)
    model.to(device).eval()
    return model, meta


def load_weights(model: torch.nn.Module, directory: PathLike) -> None:
    """Fill ``model`` (already built, e.g. by ``load_checkpoint`` or a resumed training) from
    the checkpoint's ``model.safetensors``, strictly."""
    directory = Path(directory)
    try:
        state = load_file(str(directory / WEIGHTS_NAME))
    except Exception as exc:  # safetensors raises its own types for truncated/corrupt files
        raise CheckpointError(f"cannot read {WEIGHTS_NAME}: {exc}", directory / WEIGHTS_NAME) from None
    missing, unexpected = _key_diff(model, state)
    if missing or unexpected:
        raise CheckpointError(f"weights do not match the model in {CONFIG_NAME}: missing "
                              f"{_few(missing)}, unexpected {_few(unexpected)}", directory)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"weights do not fit the model: {str(exc).splitlines()[0]}",
                              directory) from None


def load_train_state(directory: PathLike) -> Optional[dict]:
    """The resumable state saved beside a checkpoint, or None when there is none."""
    directory = Path(directory)
    if not (directory / STATE_JSON).is_file() or not (directory / STATE_TENSORS).is_file():
        return None
    skeleton = json.loads((directory / STATE_JSON).read_text(encoding="utf-8"))
    return unpack_state(load_file(str(directory / STATE_TENSORS)), skeleton)


def _key_diff(model: torch.nn.Module, state: Dict[str, torch.Tensor]):
    expected = set(model.state_dict())
    return sorted(expected - set(state)), sorted(set(state) - expected)


def _few(keys, n: int = 5) -> str:
    if not keys:
        return "none"
    more = f" (+{len(keys) - n} more)" if len(keys) > n else ""
    return ", ".join(keys[:n]) + more


# ----------------------------------------------------------------------------- state packing

def pack_state(obj: Any) -> Tuple[Dict[str, torch.Tensor], Any]:
    """Split nested state into ``{key: tensor}`` and a JSON skeleton that references the keys.

    Handles dicts (any hashable scalar keys), lists, tuples, torch tensors, numpy arrays
    and JSON scalars: enough for optimizer/scheduler ``state_dict()`` and RNG states.
    """
    tensors: Dict[str, torch.Tensor] = {}

    def walk(x: Any) -> Any:
        if isinstance(x, torch.Tensor):
            key = str(len(tensors))
            tensors[key] = x.detach().to("cpu").contiguous().clone()
            return {"__tensor__": key}
        if isinstance(x, np.ndarray):
            key = str(len(tensors))
            tensors[key] = torch.from_numpy(np.ascontiguousarray(x).copy())
            return {"__ndarray__": key}
        if isinstance(x, dict):
            return {"__dict__": [[walk(k), walk(v)] for k, v in x.items()]}
        if isinstance(x, tuple):
            return {"__tuple__": [walk(v) for v in x]}
        if isinstance(x, list):
            return [walk(v) for v in x]
        if isinstance(x, np.generic):
            return x.item()
        if x is None or isinstance(x, (bool, int, float, str)):
            return x
        raise CheckpointError(f"cannot store training state of type {type(x).__name__}")

    return tensors, walk(obj)


def unpack_state(tensors: Dict[str, torch.Tensor], skeleton: Any) -> Any:
    def walk(x: Any) -> Any:
        if isinstance(x, list):
            return [walk(v) for v in x]
        if isinstance(x, dict):
            if "__tensor__" in x:
                return tensors[x["__tensor__"]]
            if "__ndarray__" in x:
                return tensors[x["__ndarray__"]].numpy()
            if "__tuple__" in x:
                return tuple(walk(v) for v in x["__tuple__"])
            if "__dict__" in x:
                return {walk(k): walk(v) for k, v in x["__dict__"]}
        return x

    return walk(skeleton)
