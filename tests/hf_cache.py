"""A real Hugging Face cache layout built in a temporary folder, for the offline hub tests.

``add_repo(cache, "org/name", folder)`` lays ``folder`` out the way ``huggingface_hub`` stores a
download: ``models--org--name/blobs/<hash>`` holding the bytes, ``snapshots/<commit>/<path>``
linking to them, and ``refs/<revision>`` naming the commit.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Iterable, Optional


def commit_for(repo_id: str, revision: str) -> str:
    return hashlib.sha1(f"{repo_id}@{revision}".encode()).hexdigest()


def add_repo(cache: Path, repo_id: str, source: Path, revision: str = "main",
             only: Optional[Iterable[str]] = None) -> Path:
    """Cache ``source``'s files (``only``: those relative paths) as ``repo_id`` at ``revision``;
    returns the snapshot folder."""
    storage = Path(cache) / ("models--" + repo_id.replace("/", "--"))
    commit = commit_for(repo_id, revision)
    snapshot = storage / "snapshots" / commit
    wanted = None if only is None else set(only)
    for file in sorted(p for p in Path(source).rglob("*") if p.is_file()):
        rel = file.relative_to(source).as_posix()
        if wanted is not None and rel not in wanted:
            continue
        data = file.read_bytes()
        blob = storage / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        if not blob.exists():
            blob.write_bytes(data)
        link = snapshot / rel
        link.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(os.path.relpath(blob, link.parent), link)
    (storage / "refs").mkdir(parents=True, exist_ok=True)
    (storage / "refs" / revision).write_text(commit)
    return snapshot
