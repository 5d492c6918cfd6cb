"""``Verdict``: the typed result of scoring one video, shared by ``trace``, ``scan``, ``eval
--predictions`` and the Python API. ``to_json()`` is the documented record (README, "Result
schema"); ``to_csv_row()`` is its flat form for ``scan --out results.csv``.

A record, with every key a verdict can carry::

    {"schema": 2, "path": "clip.mp4",
     "fake_probability": 0.93,                          # detect / joint checkpoints
     "verdict": "fake",                                 # real | fake | not-assessed
     "source": {"label": "lavie", "probability": 0.81}, # trace / joint; label "unknown" (and
     "best_source": {"label": "lavie", "probability": 0.81},  # probability null) under the
     "sources": {"lavie": 0.81, "show-1": 0.12, ...},   # open-set threshold; best_source is
     "frames": 16, "sampling": "consecutive", "padded": 0}    # always the top known source

A file that could not be scored is ``{"schema": 2, "path": ..., "error": "<one line>"}``.
Windows add ``"aggregation": "mean"`` and ``"windows": [...]`` (each with ``start``/``end``).
A checkpoint trained on synthetic media adds ``"warning": "<one line>"`` to every record.
Schema 1 (before it had a number) wrote ``"source": "unknown"`` as a bare string and had no
``best_source``.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence

SCHEMA_VERSION = 2
UNKNOWN = "unknown"
NOT_ASSESSED = "not-assessed"
VERDICTS = ("real", "fake", NOT_ASSESSED)
# CSV columns before the per-source probability columns ("p:<label>").
CSV_BASE_COLUMNS = ("path", "verdict", "fake_probability", "source", "source_probability",
                    "frames", "sampling", "padded", "error")


@dataclass(frozen=True)
class Source:
    """A source label with its calibrated probability (``None`` for ``unknown``)."""

    label: str
    probability: Optional[float]

    @property
    def unknown(self) -> bool:
        return self.label == UNKNOWN

    def to_json(self) -> Dict[str, Any]:
        return {"label": self.label, "probability": self.probability}


@dataclass
class Verdict:
    """One video's result, or its error (then only ``path`` and ``error`` are set)."""

    path: str
    verdict: Optional[str] = None
    fake_probability: Optional[float] = None
    source: Optional[Source] = None
    best_source: Optional[Source] = None
    sources: Dict[str, float] = field(default_factory=dict)   # most likely first
    frames: Optional[int] = None
    sampling: Optional[str] = None
    padded: int = 0
    error: Optional[str] = None
    start: Optional[int] = None          # a window's first frame
    end: Optional[int] = None            # a window's last frame
    windows: Optional[List["Verdict"]] = None
    aggregation: Optional[str] = None
    label: Optional[str] = None          # the true label (``eval --predictions``)
    explanation: Optional[str] = None    # the saliency PNG written for it
    warning: Optional[str] = None        # what the checkpoint says of itself (e.g. trained on synthetic media)

    @classmethod
    def failed(cls, path: str, message: str) -> "Verdict":
        return cls(path=str(path), error=message)

    @property
    def ok(self) -> bool:
        return self.error is None

    def with_label(self, label: Optional[str]) -> "Verdict":
        return replace(self, label=label)

    # Read access by record key (``v["source"]["label"]``), so code written against the JSON
    # record works on the object too; the object itself stays the one typed source.
    def __getitem__(self, key: str) -> Any:
        return self.to_json()[key]

    def __contains__(self, key: object) -> bool:
        return key in self.to_json()

    def __iter__(self) -> Iterator[str]:
        return iter(self.to_json())

    def keys(self) -> Iterable[str]:  # so that dict(verdict) is the record
        return self.to_json().keys()

    def get(self, key: str, default: Any = None) -> Any:
        return self.to_json().get(key, default)

    # -- JSON ---------------------------------------------------------------------------------
    def to_json(self, top_level: bool = True) -> Dict[str, Any]:
        """The documented record; ``top_level=False`` for a window inside another record
        (no schema, no path)."""
        out: Dict[str, Any] = {"schema": SCHEMA_VERSION, "path": self.path} if top_level else {}
        if self.error is not None:
            out["error"] = self.error
            return out
        if self.fake_probability is not None:
            out["fake_probability"] = self.fake_probability
        out["verdict"] = self.verdict
        if self.source is not None:
            out["source"] = self.source.to_json()
            out["best_source"] = self.best_source.to_json() if self.best_source else None
            out["sources"] = dict(self.sources)
        out["frames"] = self.frames
        out["sampling"] = self.sampling
        out["padded"] = self.padded
        for key in ("start", "end", "aggregation", "label", "explanation"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        if self.windows is not None:
            out["windows"] = [w.to_json(top_level=False) for w in self.windows]
        if self.warning is not None and top_level:
            out["warning"] = self.warning
        return out

    # -- CSV ----------------------------------------------------------------------------------
    def to_csv_row(self) -> Dict[str, Any]:
        """One flat row: ``source`` split into label and probability, ``p:<label>`` per source."""
        row: Dict[str, Any] = {"path": self.path, "error": self.error}
        if self.error is None:
            row.update(verdict=self.verdict, fake_probability=self.fake_probability,
                       frames=self.frames, sampling=self.sampling, padded=self.padded)
        if self.source is not None:
            row["source"] = self.source.label
            row["source_probability"] = self.source.probability
        for label, probability in self.sources.items():
            row[f"p:{label}"] = probability
        return row


def trace_record(verdict: Verdict, windows: int = 1) -> Dict[str, Any]:
    """The object ``mmvgm trace --json`` prints (and ``/v1/trace`` returns): the record, with
    ``windows_requested`` when fewer windows fit in the video than were asked for."""
    record = verdict.to_json()
    if windows > 1 and verdict.ok and len(verdict.windows or []) < windows:
        record["windows_requested"] = windows
    return record


def upgrade_record(record: Dict[str, Any]) -> Dict[str, Any]:
    """A record read back from a results file, in the current schema: schema 1 lines (no
    ``schema`` key; ``"source": "unknown"`` a bare string, no ``best_source``) are upgraded, so
    a resumed or merged scan holds one schema."""
    if record.get("schema") == SCHEMA_VERSION:
        return record
    out = {"schema": SCHEMA_VERSION, **{k: v for k, v in record.items() if k != "schema"}}
    if out.get("source") == UNKNOWN:
        top = next(iter((out.get("sources") or {}).items()), None)
        out["source"] = {"label": UNKNOWN, "probability": None}
        out["best_source"] = {"label": top[0], "probability": top[1]} if top else None
    elif isinstance(out.get("source"), dict):
        out.setdefault("best_source", out["source"])
    return out


def csv_columns(source_labels: Sequence[str]) -> List[str]:
    return list(CSV_BASE_COLUMNS) + [f"p:{label}" for label in source_labels]
