"""``push_checkpoint(dir, "org/name")``: share a checkpoint as a hub repo with its model card.

The checkpoint is loaded first (the safetensors header is read and the weights must fit the
model its ``mmvgm.yaml`` describes; pickles are never read), then only the shareable files are
staged in a temporary folder and uploaded with ``huggingface_hub``: ``mmvgm.yaml``,
``model.safetensors``, the ``README.md`` model card and, when known, eval's ``metrics.json``.
Training state (optimizer moments, RNG) stays home.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, List, Mapping, Optional, Union

from mmvgm.checkpoint.card import CARD_MARKER, CARD_NAME, model_card
from mmvgm.checkpoint.files import (CONFIG_NAME, METRICS_NAME, WEIGHTS_NAME, load_checkpoint, read_meta,
                                    read_metrics)
from mmvgm.checkpoint.hub import parse_hub_id
from mmvgm.errors import CheckpointError, InputError, PathLike


@dataclass
class PushResult:
    repo_id: str
    url: str
    files: List[str]
    commit: Optional[str] = None


def push_checkpoint(directory: PathLike, repo_id: str, *, metrics: Optional[Union[PathLike, Mapping]] = None,
                    license: Optional[str] = None, private: bool = False, revision: Optional[str] = None,
                    message: Optional[str] = None, api: Any = None) -> PushResult:
    """Upload checkpoint ``directory`` to hub repo ``repo_id`` (created if missing).

    ``metrics``: eval's ``metrics.json`` (default: one inside ``directory``). The model card is
    built for ``repo_id``, unless the folder's ``README.md`` is one the user wrote.
    ``api``: an ``huggingface_hub.HfApi`` (default: a new one, with the user's token)."""
    ref = parse_hub_id(repo_id)
    if ref is None or ref.path or ref.revision or repo_id.startswith("hf://"):
        raise InputError(f"'{repo_id}' is not a repo id; expected org/name (use --revision for a branch)")
    directory = Path(directory).expanduser()
    if not directory.is_dir():
        raise CheckpointError("checkpoint directory not found", directory)
    load_checkpoint(directory)  # refuses what would not load back
    meta = read_meta(directory)
    figures = read_metrics(metrics if metrics is not None else directory)
    if api is None:
        api = _hub_api()
    with tempfile.TemporaryDirectory(prefix="mmvgm-push-") as tmp:
        staged = _stage(directory, Path(tmp), meta, figures, repo_id, license)
        try:
            url = str(api.create_repo(repo_id, private=private, exist_ok=True))
            if revision:
                api.create_branch(repo_id, branch=revision, exist_ok=True)
            info = api.upload_folder(repo_id=repo_id, folder_path=tmp, revision=revision,
                                     commit_message=message or "Upload mmvgm checkpoint")
        except Exception as exc:  # noqa: BLE001 - auth, network and hub errors alike end in one line
            raise CheckpointError(f"{repo_id}: upload failed: {_hub_reason(exc)}") from None
    return PushResult(repo_id, url, staged, getattr(info, "oid", None))


def _stage(directory: Path, tmp: Path, meta, metrics: Optional[Mapping], repo_id: str,
           license: Optional[str]) -> List[str]:
    for name in (CONFIG_NAME, WEIGHTS_NAME):
        _link_or_copy(directory / name, tmp / name)
    card = directory / CARD_NAME
    if card.is_file() and CARD_MARKER not in card.read_text(encoding="utf-8", errors="replace"):
        shutil.copyfile(card, tmp / CARD_NAME)  # a card the user wrote is theirs; ours is rebuilt
    else:
        (tmp / CARD_NAME).write_text(model_card(meta, metrics, name=repo_id, license=license), encoding="utf-8")
    if metrics:
        import json

        (tmp / METRICS_NAME).write_text(json.dumps(dict(metrics), indent=2, default=str), encoding="utf-8")
    return sorted(p.name for p in tmp.iterdir())


def _link_or_copy(src: Path, dest: Path) -> None:
    try:  # the weights can be gigabytes: a hard link stages them for free on the same disk
        os.link(src, dest)
    except OSError:
        shutil.copyfile(src, dest)


def _hub_api():
    from huggingface_hub import HfApi, is_offline_mode

    if is_offline_mode():
        raise CheckpointError("HF_HUB_OFFLINE is set: pushing needs the network (unset it)")
    return HfApi()


def _hub_reason(exc: BaseException) -> str:
    status = getattr(getattr(exc, "response", None), "status_code", None)
    if status in (401, 403):
        return f"not allowed ({status}): log in with `hf auth login` or set HF_TOKEN with write access"
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
