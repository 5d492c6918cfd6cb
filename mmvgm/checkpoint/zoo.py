"""The catalogue of known public weights (``configs/zoo.yaml``) and what the local HF cache holds.

``zoo_entries()`` reads the catalogue; ``entry_status(entry)`` looks in the Hugging Face cache
only (never the network) and says whether an entry is there complete, partly, or not at all,
with the ``hf download`` command that fetches it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Tuple

from mmvgm.checkpoint.hub import (HubFiles, HubRef, download_hint, hf_model_files, parse_hub_id,
                                  pipeline_files, pipeline_hint)
from mmvgm.errors import ConfigError

ZOO_FILE = "zoo.yaml"
KINDS = ("backbones", "encoders", "purifiers", "lvd")
LAYOUTS = ("model", "pipeline", "url")
ENTRY_KEYS = ("name", "id", "revision", "layout", "files", "weights", "components", "url", "use", "license", "note")


@dataclass
class ZooEntry:
    kind: str
    name: str
    layout: str
    use: str
    license: str
    id: Optional[str] = None
    revision: Optional[str] = None
    files: List[str] = field(default_factory=list)
    weights: List[str] = field(default_factory=list)
    components: Optional[List[str]] = None
    url: Optional[str] = None
    note: Optional[str] = None

    @property
    def ref(self) -> Optional[HubRef]:
        return HubRef(self.id, None if self.revision in (None, "main") else self.revision) if self.id else None

    def hub_files(self, model_index: Optional[Mapping] = None) -> HubFiles:
        """What mmvgm needs of this repo (a pipeline's files come from its ``model_index.json``)."""
        if self.layout == "pipeline":
            return pipeline_files(model_index or {}, self.components)
        base = hf_model_files(self.weights) if self.weights else HubFiles()
        return HubFiles(optional=tuple(self.files), choices=base.choices)


def zoo_entries(path=None) -> List[ZooEntry]:
    """Every entry of the catalogue, in file order (``path``: another catalogue)."""
    from mmvgm.config import configs_dir, load_yaml

    data = load_yaml(path or configs_dir() / ZOO_FILE) or {}
    out: List[ZooEntry] = []
    for kind in KINDS:
        for raw in data.get(kind) or []:
            out.append(_entry(kind, raw))
    return out


def _entry(kind: str, raw: Any) -> ZooEntry:
    if not isinstance(raw, Mapping) or not raw.get("name"):
        raise ConfigError(f"zoo: every {kind} entry needs a name")
    unknown = sorted(set(raw) - set(ENTRY_KEYS))
    if unknown:
        raise ConfigError(f"zoo: entry '{raw['name']}' has unknown keys {', '.join(unknown)}")
    entry = ZooEntry(kind=kind, **{k: v for k, v in raw.items()})
    if entry.layout not in LAYOUTS:
        raise ConfigError(f"zoo: entry '{entry.name}' has layout '{entry.layout}'; known: {', '.join(LAYOUTS)}")
    if (entry.layout == "url") != (entry.id is None) or (entry.id and parse_hub_id(entry.id) is None):
        raise ConfigError(f"zoo: entry '{entry.name}' needs a hub id (org/name), or layout url with a url")
    return entry


def entry_status(entry: ZooEntry, cache_dir=None) -> Dict[str, Any]:
    """``{name, kind, id, revision, license, use, state, commit, lacking, fetch}``; ``state`` is
    ``cached``, ``partial``, ``absent`` or ``url`` (not on the hub), read from the cache alone."""
    out: Dict[str, Any] = {"name": entry.name, "kind": entry.kind, "id": entry.id, "revision": entry.revision,
                           "license": entry.license, "use": entry.use, "note": entry.note,
                           "state": "url", "commit": None, "lacking": [], "fetch": entry.url}
    if entry.ref is None:
        return out
    folder = _cached_folder(entry.ref, cache_dir)
    index = _model_index(folder) if entry.layout == "pipeline" else None
    files = entry.hub_files(index)
    out["fetch"] = (pipeline_hint(entry.ref, entry.components) if entry.layout == "pipeline"
                    else download_hint(entry.ref, files))
    if folder is None or (entry.layout == "pipeline" and index is None):
        out["state"] = "absent"
        return out
    out["commit"] = folder.name
    out["lacking"] = files.lacking(folder)
    out["state"] = "partial" if out["lacking"] else "cached"
    return out


def _cached_folder(ref: HubRef, cache_dir):
    from pathlib import Path

    from huggingface_hub import snapshot_download

    try:  # local_files_only: a catalogue listing never touches the network
        return Path(snapshot_download(ref.repo_id, revision=ref.revision, cache_dir=cache_dir,
                                      local_files_only=True))
    except Exception:  # noqa: BLE001 - not cached (LocalEntryNotFoundError and friends)
        return None


def _model_index(folder) -> Optional[dict]:
    import json

    if folder is None or not (folder / "model_index.json").is_file():
        return None
    try:
        return json.loads((folder / "model_index.json").read_text(encoding="utf-8"))
    except ValueError:
        return None


def zoo_table(cache_dir=None) -> Tuple[List[Dict[str, Any]], int]:
    """Every entry's status and how many are cached complete."""
    rows = [entry_status(e, cache_dir) for e in zoo_entries()]
    return rows, sum(r["state"] == "cached" for r in rows)
