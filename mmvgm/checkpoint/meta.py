"""``CheckpointMeta``: the one schema of a checkpoint's ``mmvgm.yaml``, written and read by the
same code (``save`` / ``load`` are symmetric, like HF's ``save_pretrained`` / ``from_pretrained``).

The YAML alone rebuilds the model (``model_cfg``), prepares its pixels (``preprocess``,
``frames``, ``sampling``), names its outputs (``labels``) and turns its logits into
calibrated verdicts (``calibration``, fitted under ``precision``). The rest is provenance.

``format_version`` says which schema wrote the file. Version 1 (before this class) had the
same keys without ``precision``, which then reads as not recorded (its validation ran in
bf16 on a CUDA GPU, in fp32 elsewhere). A file from a newer mmvgm than this one is refused
in one line rather than misread.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Union

import yaml

from mmvgm.checkpoint.calibration import Calibration
from mmvgm.errors import CheckpointError, PathLike
from mmvgm.runtime.device import PRECISIONS as ALL_PRECISIONS

CONFIG_NAME = "mmvgm.yaml"
FORMAT_VERSION = 2
TASKS = ("detect", "trace", "joint")
PRECISIONS = tuple(p for p in ALL_PRECISIONS if p != "auto")  # what a checkpoint can record


@dataclass
class CheckpointMeta:
    """Everything a checkpoint directory says besides its weights."""

    model_cfg: Dict[str, Any]
    task: str
    labels: Union[Dict[str, Any], List[str]]   # a LabelSet's to_dict(), or plain class names
    preprocess: Dict[str, Any]
    frames: int = 16
    sampling: str = "consecutive"
    calibration: Calibration = field(default_factory=Calibration)
    precision: Optional[str] = None  # the numerics the calibration was fitted under; None: not recorded
    versions: Dict[str, Any] = field(default_factory=dict)
    data: Dict[str, Any] = field(default_factory=dict)
    seed: Optional[int] = None
    config: Optional[Dict[str, Any]] = None   # the train config that made it
    epoch: Optional[int] = None
    global_step: Optional[int] = None
    val_metrics: Dict[str, Any] = field(default_factory=dict)
    best: Dict[str, Any] = field(default_factory=dict)
    synthetic: bool = False          # trained on made-up media (``mmvgm demo``): it says so wherever it speaks
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise CheckpointError(f"unknown task '{self.task}' in the checkpoint (known: {', '.join(TASKS)})")
        if self.precision is not None and self.precision not in PRECISIONS:
            raise CheckpointError(f"unknown precision '{self.precision}' in the checkpoint "
                                  f"(known: {', '.join(PRECISIONS)})")
        if not isinstance(self.calibration, Calibration):
            self.calibration = Calibration.from_dict(self.calibration)
        self.frames = int(self.frames)

    # -- labels -----------------------------------------------------------------------------
    @property
    def warning(self) -> Optional[str]:
        """What every verdict of this checkpoint must carry, or ``None``."""
        if self.synthetic:
            return ("this checkpoint was trained on synthetic media only (mmvgm demo, or train, fit-real "
                    "or enrol --synthetic): its verdicts say nothing about real videos")
        return None

    @property
    def label_names(self) -> List[str]:
        """Class names in output order (joint: ``real`` first, then the sources)."""
        return list(self.label_set.names)

    @property
    def label_set(self):
        from mmvgm.data.labels import LabelSet

        if isinstance(self.labels, Mapping):
            return LabelSet.from_dict(self.labels)
        return LabelSet("labels", [str(n) for n in self.labels])

    @property
    def source_labels(self) -> List[str]:
        """The classes the trace head ranks: every label but ``real`` for joint models."""
        names = self.label_names
        if self.task == "detect":
            return []
        if self.task == "joint":
            sources = [n for n in names if n != "real"]
            if len(sources) != len(names) - 1:
                raise CheckpointError("a joint checkpoint's labels need exactly one 'real' class")
            return sources
        return names

    # -- dict / YAML ------------------------------------------------------------------------
    def to_dict(self) -> Dict[str, Any]:
        from mmvgm.config import yaml_safe

        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["calibration"] = self.calibration.to_dict()
        version = out.pop("format_version")
        return yaml_safe({"format_version": version, **out})

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: Optional[PathLike] = None) -> "CheckpointMeta":
        """Read any format this mmvgm knows; a newer one, or a missing required key, is a
        one-line ``CheckpointError``."""
        if not isinstance(data, Mapping):
            raise CheckpointError(f"{CONFIG_NAME} is not a mapping", where)
        version = data.get("format_version", 1)
        if not isinstance(version, int) or version < 1:
            raise CheckpointError(f"invalid format_version {version!r}", where)
        if version > FORMAT_VERSION:
            raise CheckpointError(f"written by a newer mmvgm (checkpoint format {version}; this mmvgm "
                                  f"reads up to {FORMAT_VERSION}): upgrade mmvgm to load it", where)
        for key in ("model_cfg", "task", "preprocess"):
            if data.get(key) is None:
                raise CheckpointError(f"{CONFIG_NAME} has no '{key}'", where)
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known and v is not None}
        values.setdefault("labels", [])
        values["format_version"] = FORMAT_VERSION  # what it becomes when saved again
        return cls(**values)

    def save(self, directory: PathLike) -> Path:
        """Write ``directory/mmvgm.yaml`` (the directory must exist; ``save_checkpoint`` writes
        a whole checkpoint atomically)."""
        path = Path(directory) / CONFIG_NAME
        path.write_text(yaml.safe_dump(self.to_dict(), sort_keys=False), encoding="utf-8")
        return path

    @classmethod
    def load(cls, directory: PathLike) -> "CheckpointMeta":
        path = Path(directory) / CONFIG_NAME
        if not path.is_file():
            raise CheckpointError(f"not an mmvgm checkpoint: {CONFIG_NAME} is missing", directory)
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            raise CheckpointError(f"invalid {CONFIG_NAME}: {str(exc).splitlines()[0]}", path) from None
        return cls.from_dict(data, path)

    def replace(self, **changes: Any) -> "CheckpointMeta":
        """A copy with ``changes`` (e.g. each epoch's calibration and metrics)."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values.update(changes)
        return CheckpointMeta(**values)
