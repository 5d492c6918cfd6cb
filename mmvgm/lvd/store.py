"""On-disk trajectory store: one float16 safetensors file per video plus JSON metadata.

Layout of a store directory::

    lvd.json            dataset header: format, categories, tensor layout, provenance
    videos.jsonl        one JSON line per video: id, file, labels, prompt, seed, timesteps, ...
    x0/<id>.safetensors tensor "pred_x0" of shape (steps, channels, frames, height, width), float16

Videos are written and read one at a time (reading can even pick single steps without loading
the rest), so 1000 videos x 50 steps never have to fit in memory. ``labels`` lists the unsafe
categories of a video; an empty list means "normal".
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence

import torch

from mmvgm.data.labels import LabelSet
from mmvgm.errors import CheckpointError, InputError, PathLike
from mmvgm.io.atomic import atomic_path, write_json_atomic

FORMAT = "mmvgm-lvd-trajectories"
VERSION = 1
TENSOR_KEY = "pred_x0"
LAYOUT = "steps,channels,frames,height,width"
DEFAULT_LABELS = "uvd5"
NORMAL = "normal"

_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


def category_names(labels: str = DEFAULT_LABELS) -> List[str]:
    """Unsafe categories of a label set (``configs/labels/<name>.yaml`` or a YAML path)."""
    return list(LabelSet.load(labels).names)


@dataclass
class VideoRecord:
    """One video of a store; ``meta`` holds prompt, seed, timesteps, scheduler, source index..."""

    id: str
    file: str
    labels: List[str] = field(default_factory=list)
    meta: Dict[str, Any] = field(default_factory=dict)

    @property
    def unsafe(self) -> bool:
        return bool(self.labels)

    def to_json(self) -> dict:
        return {"id": self.id, "file": self.file, "labels": self.labels, **self.meta}

    @classmethod
    def from_json(cls, obj: dict) -> "VideoRecord":
        obj = dict(obj)
        return cls(id=obj.pop("id"), file=obj.pop("file"), labels=list(obj.pop("labels", [])), meta=obj)


class TrajectoryWriter:
    """Adds videos to a store one at a time; re-opening a store resumes it (known ids are kept)."""

    def __init__(self, root: PathLike, categories: Sequence[str], info: Optional[dict] = None) -> None:
        self.root = Path(root)
        self.categories = list(categories)
        self.info = dict(info or {})
        self.shape: Optional[List[int]] = None
        self.num_videos = 0
        self._ids: set = set()
        header = self.root / "lvd.json"
        if header.exists():
            store = TrajectoryStore(self.root)
            if store.categories != self.categories:
                raise InputError(f"existing store has categories {store.categories}, not "
                                 f"{self.categories}; choose another --out", self.root)
            self.shape = store.shape
            self._ids = {v.id for v in store.videos}
            self.num_videos = len(self._ids)
            self.info = {**store.info, **self.info}
        (self.root / "x0").mkdir(parents=True, exist_ok=True)
        self._write_header()

    def has(self, video_id: str) -> bool:
        return video_id in self._ids

    def add(self, video_id: str, pred_x0: torch.Tensor, labels: Sequence[str] = (), **meta: Any) -> VideoRecord:
        """Store one trajectory ``(steps, C, F, H, W)`` as float16 (atomic per file)."""
        if not _ID_RE.match(video_id):
            raise InputError(f"invalid video id '{video_id}' (letters, digits, '_', '-', '.')")
        if video_id in self._ids:
            raise InputError(f"video id '{video_id}' is already in the store", self.root)
        unknown = [c for c in labels if c not in self.categories]
        if unknown:
            raise InputError(f"unknown categories {unknown}; known: {self.categories}")
        if pred_x0.ndim != 5:
            raise InputError(f"a trajectory must be (steps, channels, frames, height, width), "
                             f"got shape {tuple(pred_x0.shape)}")
        shape = list(pred_x0.shape)
        if self.shape is None:
            self.shape = shape
        elif shape != self.shape:
            raise InputError(f"trajectory '{video_id}' has shape {shape}, the store holds {self.shape}")
        from safetensors.torch import save_file

        rel = f"x0/{video_id}.safetensors"
        tensor = pred_x0.detach().to("cpu", torch.float16).contiguous()
        with atomic_path(self.root / rel) as tmp:
            save_file({TENSOR_KEY: tensor}, str(tmp), metadata={"id": video_id, "layout": LAYOUT})
        record = VideoRecord(video_id, rel, sorted(labels, key=self.categories.index), dict(meta))
        with open(self.root / "videos.jsonl", "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record.to_json(), default=_jsonable) + "\n")
        self._ids.add(video_id)
        self.num_videos += 1
        return record

    def close(self) -> "TrajectoryStore":
        self._write_header()
        return TrajectoryStore(self.root)

    def __enter__(self) -> "TrajectoryWriter":
        return self

    def __exit__(self, *exc) -> None:
        self._write_header()

    def _write_header(self) -> None:
        from mmvgm.runtime import package_versions

        write_json_atomic(self.root / "lvd.json", {
            "format": FORMAT, "version": VERSION, "categories": self.categories, "negative": NORMAL,
            "layout": LAYOUT, "dtype": "float16", "shape": self.shape, "num_videos": self.num_videos,
            "info": self.info, "versions": package_versions(),
        })


class TrajectoryStore:
    """Read side of a store: ``videos``, ``categories``, ``shape`` and lazy ``load``."""

    def __init__(self, root: PathLike) -> None:
        self.root = Path(root)
        header_path = self.root / "lvd.json"
        if not header_path.is_file():
            raise InputError("not an LVD trajectory store (no lvd.json); create one with "
                             "`mmvgm lvd-record` or `mmvgm lvd-import`", self.root)
        try:
            header = json.loads(header_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise InputError(f"lvd.json is not valid JSON: {exc}", header_path) from None
        if header.get("format") != FORMAT:
            raise InputError(f"lvd.json is not an {FORMAT} header", header_path)
        self.header = header
        self.categories: List[str] = list(header["categories"])
        self.shape: Optional[List[int]] = header.get("shape")
        self.info: dict = header.get("info", {})
        self.videos: List[VideoRecord] = []
        index = self.root / "videos.jsonl"
        if index.exists():
            with open(index, encoding="utf-8") as fh:
                for n, line in enumerate(fh, 1):
                    if not line.strip():
                        continue
                    try:
                        self.videos.append(VideoRecord.from_json(json.loads(line)))
                    except (json.JSONDecodeError, KeyError):
                        # a line cut by an interrupted run: everything before it is intact
                        raise InputError(f"videos.jsonl line {n} is damaged", index) from None
        self._by_id = {v.id: v for v in self.videos}

    @property
    def num_steps(self) -> int:
        if not self.shape:
            raise InputError("the store holds no trajectories", self.root)
        return int(self.shape[0])

    def __len__(self) -> int:
        return len(self.videos)

    def __iter__(self) -> Iterator[VideoRecord]:
        return iter(self.videos)

    def get(self, video_id: str) -> VideoRecord:
        try:
            return self._by_id[video_id]
        except KeyError:
            raise InputError(f"no video '{video_id}' in the store", self.root) from None

    def load(self, video_id: str, steps: Optional[Sequence[int]] = None) -> torch.Tensor:
        """float16 ``(len(steps), C, F, H, W)`` (all steps when ``steps`` is None), read lazily."""
        from safetensors import SafetensorError, safe_open

        path = self.root / self.get(video_id).file
        try:
            with safe_open(str(path), framework="pt") as fh:
                if steps is None:
                    return fh.get_tensor(TENSOR_KEY)
                sl = fh.get_slice(TENSOR_KEY)
                return torch.stack([sl[int(s)] for s in steps])
        except FileNotFoundError:
            raise InputError("trajectory file is missing", path) from None
        except (SafetensorError, OSError) as exc:
            raise CheckpointError(f"cannot read trajectory: {exc}", path) from None

    def multi_hot(self, record: VideoRecord, categories: Optional[Sequence[str]] = None) -> List[int]:
        cats = list(categories or self.categories)
        return [int(c in record.labels) for c in cats]


def _jsonable(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    return str(obj)
