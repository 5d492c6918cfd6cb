"""Pretrained weights: read a checkpoint file or directory and load it strictly.

Accepted (a hub id, ``org/name[@revision]`` or ``hf://org/name[@revision][/file]``, is first
resolved to its local snapshot by ``mmvgm.checkpoint.hub``; nothing else is ever fetched):

* a directory in HF format (``config.json`` + ``model.safetensors`` or ``pytorch_model.bin``,
  or a sharded ``model.safetensors.index.json``): VideoMAE, X-CLIP, timm hub dirs;
* a ``.safetensors`` file;
* a ``.pyth`` / ``.pth`` / ``.pt`` / ``.bin`` / ``.ckpt`` file read with
  ``torch.load(weights_only=True)`` (no arbitrary unpickling). A dict holding the weights under
  ``model_state`` (pytorchvideo), ``state_dict``, ``model`` or ``module`` is unwrapped, and a
  DDP ``module.`` prefix is stripped.

The strict rule: every checkpoint key must land on a parameter/buffer of the backbone with the
same shape, and every backbone key must be present, with two documented exceptions declared by
each backbone class: ``ignore_unexpected`` (the checkpoint's own classification / pretraining
head, e.g. ``classifier.*``, ``decoder.*``, pytorchvideo's head block, timm's ``fc``/``head``)
and ``allow_missing`` (pooling norms a pretraining checkpoint does not have; they keep their
initialisation). Anything else raises ``CheckpointError`` listing the keys.
"""
from __future__ import annotations

import json
import pickle
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, List, Mapping, Sequence

import torch
from torch import nn

from mmvgm.errors import CheckpointError, PathLike

TORCH_SUFFIXES = (".pyth", ".pth", ".pt", ".bin", ".ckpt", ".tar")
WRAPPER_KEYS = ("model_state", "state_dict", "model", "module")
_MAX_LISTED = 8


@dataclass
class LoadReport:
    """What ``load_pretrained`` did: how many tensors loaded and what the rule let through."""

    path: str
    loaded: int = 0
    ignored_unexpected: List[str] = field(default_factory=list)
    kept_missing: List[str] = field(default_factory=list)

    def __str__(self) -> str:
        text = f"loaded {self.loaded} tensors from {self.path}"
        if self.ignored_unexpected:
            text += f"; ignored {len(self.ignored_unexpected)} head keys ({_listing(self.ignored_unexpected)})"
        if self.kept_missing:
            text += f"; kept {len(self.kept_missing)} freshly initialised ({_listing(self.kept_missing)})"
        return text


def _listing(keys: Sequence[str]) -> str:
    keys = list(keys)
    shown = ", ".join(keys[:_MAX_LISTED])
    return shown + (f", ... (+{len(keys) - _MAX_LISTED} more)" if len(keys) > _MAX_LISTED else "")


def _matches(key: str, patterns: Iterable[str]) -> bool:
    return any(key == p or (p.endswith(".") and key.startswith(p)) for p in patterns)


def find_weights_file(path: PathLike, weight_files: Sequence[str]) -> List[Path]:
    """The weight file(s) for ``path``: the file itself, or the first of ``weight_files`` in a dir."""
    path = Path(path).expanduser()
    expected = ", ".join(weight_files)
    if not path.exists():
        raise CheckpointError(f"pretrained weights not found; expected a directory with one of "
                              f"{expected} (+ config.json), or a .safetensors/.pth/.pyth file", path)
    if path.is_file():
        return [path]
    for name in weight_files:
        if (path / name).is_file():
            return [path / name]
        index = path / f"{name}.index.json"
        if index.is_file():
            try:
                shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
            except (ValueError, KeyError) as exc:
                raise CheckpointError(f"unreadable shard index ({exc})", index) from None
            return [path / shard for shard in shards]
    raise CheckpointError(f"no weights file in this directory; expected one of {expected}", path)


def read_state_dict(path: PathLike, weight_files: Sequence[str] = ("model.safetensors",
                                                                   "pytorch_model.bin")) -> Dict[str, torch.Tensor]:
    """Read (and unwrap) a state dict from a weights file or directory, on the CPU."""
    state: Dict[str, torch.Tensor] = {}
    for file in find_weights_file(path, weight_files):
        state.update(_read_file(file))
    return state


def _read_file(file: Path) -> Dict[str, torch.Tensor]:
    if not file.is_file():
        raise CheckpointError("weights shard is missing", file)
    if file.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(file), device="cpu")
        except Exception as exc:  # noqa: BLE001 - safetensors raises its own error types
            raise CheckpointError(f"not a readable safetensors file ({exc})", file) from None
    if file.suffix not in TORCH_SUFFIXES and not file.name.endswith(".pth.tar"):
        raise CheckpointError(f"unsupported weights file type '{file.suffix}'; use .safetensors or "
                              f"one of {', '.join(TORCH_SUFFIXES)}", file)
    try:
        obj = torch.load(str(file), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise CheckpointError("refusing to load: the file holds Python objects, not only tensors, and mmvgm "
                              "never unpickles them (save the state dict as .safetensors)", file) from None
    except Exception as exc:  # noqa: BLE001 - corrupt zip/pickle streams raise many types
        raise CheckpointError(f"not a readable torch checkpoint ({type(exc).__name__}: {exc})".splitlines()[0],
                              file) from None
    return _unwrap(obj, file)


def _unwrap(obj: object, file: Path) -> Dict[str, torch.Tensor]:
    # Training checkpoints nest the weights: {"model_state": {...}, "epoch": 3, ...}.
    for _ in range(3):
        if not isinstance(obj, Mapping) or all(isinstance(v, torch.Tensor) for v in obj.values()):
            break
        inner = next((obj[k] for k in WRAPPER_KEYS if isinstance(obj.get(k), Mapping)), None)
        if inner is None:
            break
        obj = inner
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"expected a state dict, found {type(obj).__name__}", file)
    state = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not state:
        raise CheckpointError("no tensors found in the checkpoint", file)
    if all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def hf_renamed(state: Dict[str, torch.Tensor], model_type: str) -> Dict[str, torch.Tensor]:
    """Apply transformers' own checkpoint key renames for ``model_type`` (e.g. VideoMAE's
    ``q_bias``/``v_bias`` -> ``query.bias``/``value.bias``; ``save_pretrained`` writes the old names)."""
    try:
        from transformers.conversion_mapping import get_checkpoint_conversion_mapping

        transforms = get_checkpoint_conversion_mapping(model_type) or []
    except ImportError:  # older transformers: checkpoints already use the module names
        return state
    renames = [(src, dst) for t in transforms if type(t).__name__ == "WeightRenaming"
               for src, dst in zip(getattr(t, "source_patterns", ()), getattr(t, "target_patterns", ()))]
    if not renames:
        return state
    out = {}
    for key, value in state.items():
        for src, dst in renames:
            key = re.sub(src, dst, key)
        out[key] = value
    return out


def load_state_strict(module: nn.Module, state: Mapping[str, torch.Tensor], *, source: PathLike,
                      ignore_unexpected: Iterable[str] = (), allow_missing: Iterable[str] = ()) -> LoadReport:
    """Load ``state`` into ``module`` under the strict rule described in the module docstring."""
    ignore_unexpected, allow_missing = tuple(ignore_unexpected), tuple(allow_missing)
    own = module.state_dict()
    report = LoadReport(path=str(source))
    unexpected = [k for k in state if k not in own]
    report.ignored_unexpected = [k for k in unexpected if _matches(k, ignore_unexpected)]
    unexpected = [k for k in unexpected if not _matches(k, ignore_unexpected)]
    missing = [k for k in own if k not in state]
    report.kept_missing = [k for k in missing if _matches(k, allow_missing)]
    missing = [k for k in missing if not _matches(k, allow_missing)]
    mismatched = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
                  for k in state if k in own and state[k].shape != own[k].shape]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing keys: {_listing(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys: {_listing(unexpected)}")
    if mismatched:
        problems.append(f"{len(mismatched)} shape mismatches (checkpoint vs model): {_listing(mismatched)}")
    if problems:
        raise CheckpointError("weights do not match the backbone (does the backbone config describe "
                              "the checkpoint's architecture?): " + "; ".join(problems), source)
    loadable = {k: v for k, v in state.items() if k in own}
    module.load_state_dict(loadable, strict=False)
    report.loaded = len(loadable)
    return report


# Where an HF config field comes from in an mmvgm backbone config (for a helpful error).
_TOP_LEVEL_FIELDS = {"num_frames": "frames", "image_size": "size", "num_channels": "channels"}


def check_hf_config(backbone: nn.Module, directory: Path) -> None:
    """Compare the architecture fields (``backbone.hf_arch_fields``, dotted) of an HF dir's
    ``config.json`` with the backbone's config: activation or epsilon differences would load
    without a shape error and silently change the features."""
    fields = getattr(backbone, "hf_arch_fields", ())
    config_file = directory / "config.json"
    if not fields or not config_file.is_file():
        return
    try:
        theirs = json.loads(config_file.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise CheckpointError(f"unreadable config.json ({exc})", config_file) from None
    ours = backbone.hf_config.to_dict()
    diffs = []
    for dotted in fields:
        a, b = _lookup(theirs, dotted), _lookup(ours, dotted)
        if a is not _MISSING and b is not _MISSING and a != b:
            leaf = dotted.split(".")[-1]
            where = _TOP_LEVEL_FIELDS.get(leaf, f"model.{dotted}")
            diffs.append(f"{dotted} is {a!r} in the checkpoint but {b!r} here (set '{where}')")
    if diffs:
        raise CheckpointError("the checkpoint's config.json describes another architecture: " + "; ".join(diffs),
                              directory)


_MISSING = object()


def _lookup(tree: Mapping, dotted: str):
    node = tree
    for key in dotted.split("."):
        if not isinstance(node, Mapping) or key not in node:
            return _MISSING
        node = node[key]
    return node


def load_pretrained(backbone: nn.Module, path: PathLike) -> LoadReport:
    """Load pretrained weights (a local path or a hub id) into a backbone built by ``build_backbone``.

    Missing path -> ``CheckpointError`` naming the path and the expected files; keys are
    checked strictly (see the module docstring) and the error lists what did not match. For an
    HF dir, the architecture fields of its ``config.json`` must match the backbone config too.
    """
    from mmvgm.checkpoint.hub import hf_model_files, resolve

    weight_files = getattr(backbone, "weight_files", ("model.safetensors", "pytorch_model.bin"))
    path = resolve(path, hf_model_files(weight_files))
    state = read_state_dict(path, weight_files)
    if path.is_dir():
        check_hf_config(backbone, path)
    adapt = getattr(backbone, "adapt_state_dict", None)
    if adapt is not None:
        state = adapt(state)
    return load_state_strict(backbone, state, source=path,
                             ignore_unexpected=getattr(backbone, "ignore_unexpected", ()),
                             allow_missing=getattr(backbone, "allow_missing", ()))
