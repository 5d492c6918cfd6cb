"""The model card (``README.md``) of a checkpoint shared as a hub repo.

``model_card(meta, metrics)`` writes what a reader of the hub page needs, from the checkpoint's
own ``mmvgm.yaml`` and, when given, the ``metrics.json`` of an ``mmvgm eval`` run: the YAML
metadata the hub indexes (library, tags, licence, base model), the task and labels, the
backbone and its pretrained weights, the training data by fingerprint (never by local path),
the figures, the intended use and the limits. A checkpoint trained on synthetic media says so
in the title, the tags and the limits.
"""
from __future__ import annotations

import numbers
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Optional, Tuple

from mmvgm.checkpoint.hub import parse_hub_id
from mmvgm.checkpoint.meta import CheckpointMeta
from mmvgm.errors import PathLike

CARD_NAME = "README.md"
CARD_MARKER = "<!-- written by mmvgm: rebuilt from mmvgm.yaml on push -->"
LIBRARY_NAME = "mmvgm"
BASE_TAGS = ("mmvgm", "video-classification", "ai-generated-video-detection", "video-forensics")
TASK_TEXT = {
    "detect": "detection: is the video real or AI-generated (one calibrated probability)",
    "trace": "attribution: which generator made the video (a calibrated probability per source, "
             "'unknown' below the open-set threshold)",
    "joint": "detection and attribution with one backbone: real or generated, and if generated, by which source",
}
_METRIC_KEYS = ("n", "accuracy", "balanced_accuracy", "macro_f1", "auc", "ap", "tpr_at_fpr_1", "tpr_at_fpr_5",
                "unknown_rate", "open_set_auroc", "detect_auroc_vs_real", "heldout_unknown_rate")


def backbone_weights(meta: CheckpointMeta) -> Tuple[Optional[str], str]:
    """``(hub id or None, words for the card)`` for the pretrained weights the backbone started from."""
    backbone = meta.model_cfg.get("backbone")
    weights = backbone.get("weights") if isinstance(backbone, Mapping) else None
    if weights is None and isinstance(meta.config, Mapping):
        weights = meta.config.get("weights")
    if not weights:
        return None, "none: trained from random initialisation"
    ref = parse_hub_id(str(weights))
    if ref is not None:
        return ref.repo_id, f"[{ref}](https://huggingface.co/{ref.repo_id})"
    return None, f"local weights ({Path(str(weights)).name}); not on the hub"


def card_metadata(meta: CheckpointMeta, license: Optional[str] = None) -> Dict[str, Any]:
    """The YAML header the hub reads (``huggingface_hub.ModelCardData`` fields)."""
    base, _ = backbone_weights(meta)
    tags = list(BASE_TAGS) + [f"task-{meta.task}", _backbone_name(meta)]
    if meta.synthetic:
        tags.append("synthetic-training-data")
    data: Dict[str, Any] = {"library_name": LIBRARY_NAME, "license": license or "other", "tags": tags,
                            "pipeline_tag": "video-classification"}
    if base:
        data["base_model"] = base
    return data


def model_card(meta: CheckpointMeta, metrics: Optional[Mapping[str, Any]] = None, *,
               name: Optional[str] = None, license: Optional[str] = None) -> str:
    """The whole ``README.md``: YAML metadata, then the card's sections in Markdown."""
    from huggingface_hub import ModelCardData

    header = ModelCardData(**card_metadata(meta, license)).to_yaml()
    sections = [_title(meta, name), _task(meta), _backbone(meta), _data(meta), _figures(meta, metrics),
                _use(meta, name), _limits(meta, license)]
    body = "\n\n".join(s.strip() for s in sections)
    return f"---\n{header}\n---\n{CARD_MARKER}\n\n{body}\n"


def write_model_card(directory: PathLike, meta: CheckpointMeta, metrics: Optional[Mapping[str, Any]] = None,
                     *, name: Optional[str] = None, license: Optional[str] = None) -> Path:
    path = Path(directory) / CARD_NAME
    path.write_text(model_card(meta, metrics, name=name, license=license), encoding="utf-8")
    return path


# ----------------------------------------------------------------------------- sections

def _backbone_name(meta: CheckpointMeta) -> str:
    backbone = meta.model_cfg.get("backbone")
    return str(backbone.get("backbone", "unknown")) if isinstance(backbone, Mapping) else str(backbone)


def _title(meta: CheckpointMeta, name: Optional[str]) -> str:
    title = f"# {name or 'mmvgm checkpoint'}"
    lines = [title, "", f"An mmvgm {meta.task} model for AI-generated video."]
    if meta.warning:
        lines += ["", f"> **Warning:** {meta.warning}."]
    return "\n".join(lines)


def _task(meta: CheckpointMeta) -> str:
    lines = ["## Task and labels", "", f"- Task: {TASK_TEXT[meta.task]}.",
             f"- Labels, in output order: {', '.join(f'`{n}`' for n in meta.label_names)}."]
    if meta.label_set.name not in ("", "labels"):  # "labels": the name of a bare list, says nothing
        lines.append(f"- Label set: `{meta.label_set.name}`.")
    cal = meta.calibration.to_dict()
    fitted = {k: v for k, v in cal.items() if isinstance(v, numbers.Number) and not isinstance(v, bool)}
    if fitted:
        lines.append("- Calibration, fitted on the validation split: "
                     + ", ".join(f"{k} {_number(v)}" for k, v in fitted.items()) + ".")
    return "\n".join(lines)


def _backbone(meta: CheckpointMeta) -> str:
    backbone = meta.model_cfg.get("backbone") if isinstance(meta.model_cfg.get("backbone"), Mapping) else {}
    _, weights = backbone_weights(meta)
    return "\n".join(["## Backbone", "", f"- Backbone: `{_backbone_name(meta)}`, "
                      f"{backbone.get('frames', meta.frames)} frames at {backbone.get('size', '?')} px "
                      f"({meta.sampling} sampling).", f"- Pretrained weights it started from: {weights}."])


def _data(meta: CheckpointMeta) -> str:
    data = meta.data or {}
    lines = ["## Training data", ""]
    if data.get("n") is not None:
        lines.append(f"- Videos: {data['n']}.")
    if data.get("fingerprint"):
        lines.append(f"- Fingerprint of the file list and contents (sha256): `{data['fingerprint']}`.")
    for split, size in (data.get("split_sizes") or {}).items():
        digest = (data.get("split_fingerprints") or {}).get(split)
        lines.append(f"- Split `{split}`: {size} videos" + (f", fingerprint `{digest}`." if digest else "."))
    if meta.seed is not None:
        lines.append(f"- Seed: {meta.seed}.")
    if meta.synthetic:
        lines.append("- **The training data was synthetic** (made-up media, not real or generated videos).")
    if len(lines) == 2:
        lines.append("- Not recorded in the checkpoint.")
    return "\n".join(lines)


def _figures(meta: CheckpointMeta, metrics: Optional[Mapping[str, Any]]) -> str:
    if metrics:
        where = f"split `{metrics.get('split', '?')}`" + (f", {metrics['n']} videos" if "n" in metrics else "")
        rows = list(_metric_rows(metrics))
        where += f"; precision {metrics['precision']}" if metrics.get("precision") else ""
        head = f"## Evaluation\n\nFrom `mmvgm eval` ({where}):"
    else:
        rows = list(_metric_rows(meta.val_metrics or {}))
        head = ("## Evaluation\n\nNo `mmvgm eval` metrics were given. Validation figures from training "
                "(the split that selected this checkpoint and fitted its threshold, so not a test result):")
    if not rows:
        return head.split("\n\n")[0] + "\n\nNo figures recorded."
    table = ["| metric | value |", "|---|---|"] + [f"| {k} | {_number(v)} |" for k, v in rows]
    return head + "\n\n" + "\n".join(table)


def _metric_rows(metrics: Mapping[str, Any], prefix: str = "", depth: int = 0) -> Iterator[Tuple[str, Any]]:
    for key, value in metrics.items():
        if isinstance(value, Mapping) and depth < 1 and key not in ("per_class", "calibration", "versions",
                                                                    "trained_with", "config"):
            yield from _metric_rows(value, f"{prefix}{key}.", depth + 1)
        elif key in _METRIC_KEYS and isinstance(value, numbers.Number) and not isinstance(value, bool):
            yield f"{prefix}{key}", value


def _use(meta: CheckpointMeta, name: Optional[str]) -> str:
    repo = name or "org/name"
    return "\n".join([
        "## Intended use", "",
        "Triage by trust-and-safety teams and researchers: rank and flag videos for human review. "
        "A verdict is evidence, not proof; do not act on it alone.", "",
        "With mmvgm installed:", "",
        "```bash", f"mmvgm trace clip.mp4 --checkpoint {repo}", "```", "",
        "```python", "from mmvgm import Predictor", "",
        f'predictor = Predictor.from_pretrained("{repo}")', 'print(predictor.predict("clip.mp4").to_json())', "```"])


def _limits(meta: CheckpointMeta, license: Optional[str]) -> str:
    lines = ["## Limitations", ""]
    if meta.synthetic:
        lines.append("- **Trained on synthetic media only**: its verdicts say nothing about real videos.")
    sources = meta.source_labels
    if sources:
        lines.append(f"- It knows only the sources it was trained on ({', '.join(sources)}); videos from "
                     "other generators should come out as `unknown`, but may be attributed wrongly.")
    lines += ["- Figures hold for data like the evaluation data; re-encoding, resizing, cropping and new "
              "generators lower them.",
              "- Scores are calibrated for the clip length and sampling above; other settings are refused "
              "or change the scores."]
    if not license:
        lines.append("- Licence not stated by the uploader (`other`); the pretrained weights' own licence applies.")
    return "\n".join(lines)


def _number(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def metric_rows(metrics: Mapping[str, Any]) -> List[Tuple[str, Any]]:
    """The scalar figures of a ``metrics.json`` that a card shows (``detect.auc``, ``accuracy``, ...)."""
    return list(_metric_rows(metrics))
