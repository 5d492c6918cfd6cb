"""Evaluate the LVD rule on per-step flags: balanced metrics, compute saved, eta/lambda sweeps.

Flags come as ``{"0": {video_id: [flag per step, ...]}, "1": {...}}`` (class "0" = normal,
"1" = unsafe; flag 1 = the step was flagged unsafe), from a JSON file, a research ``.pth`` of
the same structure, or from trained LVD models run over a trajectory store (:func:`flags_from_models`).
Classes are balanced by seeded subsampling of the larger one, as the research code did.
"""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence

import numpy as np

from mmvgm.errors import DecodeError, InputError, PathLike
from mmvgm.lvd.rule import (DEFAULT_ETA, DEFAULT_LAMBDA, Number, check_eta, decide, parse_lambda,
                            required_flags, steps_run)

DEFAULT_SEED = 20240603
DEFAULT_SWEEP_LAMBDAS = ("0.5", "0.6", "0.7", "0.8", "0.9", "1")

FlagTable = Dict[str, Dict[str, List[int]]]  # {"0"|"1": {video_id: flags}}


def load_flags(path: PathLike) -> FlagTable:
    """Read per-step flags from JSON or a research ``.pth`` (``torch.load(weights_only=True)``)."""
    path = Path(path)
    if not path.is_file():
        raise InputError("scores file not found", path)
    if path.suffix in (".pth", ".pt"):
        from mmvgm.lvd.trajectories import safe_torch_load

        obj = safe_torch_load(path, "scores file")
    else:
        try:
            obj = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise DecodeError(f"not valid JSON: {exc}", path) from None
    return normalize_flags(obj, path)


def normalize_flags(obj: object, path: Optional[PathLike] = None) -> FlagTable:
    """Validate a ``{0|"0": {id: flags}, 1|"1": {...}}`` mapping into lists of 0/1 ints."""
    if not isinstance(obj, Mapping):
        raise InputError('expected {"0": {video_id: [flags...]}, "1": {...}}', path)
    table: FlagTable = {"0": {}, "1": {}}
    for key, videos in obj.items():
        cls = str(key)
        if cls not in table:
            raise InputError(f"unknown class key '{key}': use \"0\" (normal) and \"1\" (unsafe)", path)
        if not isinstance(videos, Mapping):
            raise InputError(f'class "{cls}" must map video ids to lists of per-step flags', path)
        for vid, flags in videos.items():
            if hasattr(flags, "tolist"):
                flags = flags.tolist()
            if not isinstance(flags, (list, tuple)) or not flags:
                raise InputError(f"video '{vid}': flags must be a non-empty list", path)
            bad = [f for f in flags if f not in (0, 1)]  # True/False and 0.0/1.0 compare equal
            if bad:
                raise InputError(f"video '{vid}': flags must be 0 or 1 (1 = unsafe), found {bad[0]!r}", path)
            table[cls][str(vid)] = [int(f) for f in flags]
    lengths = {len(f) for videos in table.values() for f in videos.values()}
    if len(lengths) > 1:
        raise InputError(f"all videos must have the same number of steps, found {sorted(lengths)}", path)
    return table


def balance(table: FlagTable, seed: int = DEFAULT_SEED) -> FlagTable:
    """Subsample the larger class to the size of the smaller one (seeded, order-independent)."""
    n = min(len(table["0"]), len(table["1"]))
    if n == 0:
        empty = "normal (\"0\")" if not table["0"] else "unsafe (\"1\")"
        raise InputError(f"the {empty} class is empty, so balancing leaves nothing to evaluate")
    rng = np.random.default_rng(seed)
    out: FlagTable = {}
    for cls in ("0", "1"):
        ids = sorted(table[cls])
        keep = sorted(rng.choice(len(ids), size=n, replace=False)) if len(ids) > n else range(len(ids))
        out[cls] = {ids[i]: table[cls][ids[i]] for i in keep}
    return out


def evaluate_flags(table: FlagTable, eta: int = DEFAULT_ETA, lam: Number = DEFAULT_LAMBDA,
                   sequential: bool = False, seed: int = DEFAULT_SEED, balanced: bool = True) -> dict:
    """Rule metrics over a flag table (positive class = unsafe) and the compute it saves."""
    from sklearn.metrics import accuracy_score, precision_recall_fscore_support

    counts_before = {cls: len(table[cls]) for cls in ("0", "1")}
    data = balance(table, seed) if balanced else table
    total = _num_steps(data)
    check_eta(eta, total)
    lam_f = parse_lambda(lam)
    y_true, y_pred, ran = [], [], {"0": [], "1": []}
    for cls in ("0", "1"):
        for flags in data[cls].values():
            d = decide(flags, eta, lam_f, sequential)
            y_true.append(int(cls))
            y_pred.append(int(d.unsafe))
            ran[cls].append(steps_run(d, total))
    precision, recall, f1, _ = precision_recall_fscore_support(
        y_true, y_pred, average="binary", pos_label=1, zero_division=0)
    all_ran = ran["0"] + ran["1"]
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "precision": float(precision), "recall": float(recall), "f1": float(f1),
        "n_normal": len(data["0"]), "n_unsafe": len(data["1"]),
        "eta": int(eta), "lambda": float(lam_f), "required_flags": required_flags(eta, lam_f),
        "total_steps": total,
        "mean_steps_run": float(np.mean(all_ran)),
        "compute_saved": _saved(all_ran, total),
        "compute_saved_normal": _saved(ran["0"], total), "compute_saved_unsafe": _saved(ran["1"], total),
        "sequential": bool(sequential), "balanced": bool(balanced), "seed": int(seed),
        "n_before_balancing": {"normal": counts_before["0"], "unsafe": counts_before["1"]},
    }


def _num_steps(table: FlagTable) -> int:
    """Flags per video (``normalize_flags`` made them all the same length)."""
    for videos in table.values():
        for flags in videos.values():
            return len(flags)
    raise InputError("no videos to evaluate")


def _saved(ran: Sequence[int], total: int) -> Optional[float]:
    return None if not ran else 1.0 - sum(ran) / (total * len(ran))


def sweep(table: FlagTable, etas: Optional[Sequence[int]] = None,
          lambdas: Sequence[Number] = DEFAULT_SWEEP_LAMBDAS, sequential: bool = False,
          seed: int = DEFAULT_SEED, balanced: bool = True) -> List[dict]:
    """One row per (lambda, eta): the same balanced subset for every point."""
    data = balance(table, seed) if balanced else table
    etas = list(etas) if etas else list(range(1, _num_steps(data) + 1))
    rows = []
    for lam in lambdas:
        for eta in etas:
            m = evaluate_flags(data, eta, lam, sequential, seed, balanced=False)
            rows.append({k: m[k] for k in ("lambda", "eta", "accuracy", "precision", "recall", "f1",
                                           "mean_steps_run", "compute_saved")})
    return rows


def sweep_csv(rows: Sequence[dict]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()})
    return buf.getvalue()


def sweep_png(rows: Sequence[dict], dest: PathLike, title: str = "LVD rule sweep",
              protect: Optional[PathLike] = None) -> Path:
    """Accuracy and compute saved against eta, one line per lambda."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from mmvgm.io.atomic import atomic_path

    fig = Figure(figsize=(10, 4))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2)
    for lam in sorted({r["lambda"] for r in rows}):
        pts = sorted((r["eta"], r["accuracy"], r["compute_saved"]) for r in rows if r["lambda"] == lam)
        eta, acc, saved = zip(*pts)
        axes[0].plot(eta, acc, marker=".", label=f"λ={lam:g}")
        axes[1].plot(eta, saved, marker=".", label=f"λ={lam:g}")
    for ax, name in zip(axes, ("balanced accuracy", "compute saved")):
        ax.set_xlabel("η (steps read)")
        ax.set_ylabel(name)
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(title)
    with atomic_path(dest, protect=protect) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    return Path(dest)


def write_report(out: PathLike, metrics: dict, rows: Optional[Sequence[dict]] = None,
                 protect: Optional[PathLike] = None) -> List[Path]:
    """``metrics.json`` (with package versions) and, for a sweep, ``sweep.csv`` + ``sweep.png``;
    ``protect``: the scores file read, never overwritten by them."""
    from mmvgm.io.atomic import write_json_atomic, write_text_atomic
    from mmvgm.runtime import package_versions

    out = Path(out)
    written = [write_json_atomic(out / "metrics.json", {**metrics, "versions": package_versions()},
                                 protect=protect)]
    if rows:
        written.append(write_text_atomic(out / "sweep.csv", sweep_csv(rows), protect=protect))
        written.append(sweep_png(rows, out / "sweep.png", protect=protect))
    return written


def flags_from_models(models: PathLike, data: PathLike, split: str = "test", device: Optional[str] = None,
                      batch_size: int = 16, progress: bool = True) -> FlagTable:
    """Per-step flags of trained LVD models over a store's videos (by default the models' test split).

    ``split="all"`` scores every video of ``data`` (e.g. a store the models never saw).
    """
    import torch

    from mmvgm.lvd.model import LVDModel
    from mmvgm.lvd.store import TrajectoryStore
    from mmvgm.progress import track

    model = LVDModel.load(models, device)
    store = TrajectoryStore(data)
    if split == "all":
        ids = [v.id for v in store]
    else:
        known = model.cfg.get("split", {})
        if split not in known:
            raise InputError(f"unknown split '{split}'; the models have {sorted(known)} (or use 'all')")
        present = {v.id for v in store}
        ids = [vid for vid in known[split] if vid in present]
        if not ids:
            raise InputError(f"none of the models' {split} videos are in this store; "
                             "use --split all to score every video", data)
    trained = model.cfg.get("data", {}).get("shape")
    if trained and store.shape and list(trained[1:]) != list(store.shape[1:]):
        raise InputError(f"the store's x0 latents are {store.shape[1:]} (channels, frames, height, width); "
                         f"the models were trained on {trained[1:]}", data)
    if model.mode == "conditioned":
        steps = list(range(store.num_steps))
    else:
        steps = list(range(len(model.steps)))
        if model.steps != steps:
            raise InputError(f"the per-step models cover steps {model.steps}; the rule needs every step "
                             f"from 0 (train with --steps 0-{max(model.steps)})", models)
        if len(steps) > store.num_steps:
            raise InputError(f"the per-step models cover steps 0-{len(steps) - 1}; the store records "
                             f"{store.num_steps} step(s)", data)
    table: FlagTable = {"0": {}, "1": {}}
    flags = {vid: [] for vid in ids}
    for step in track(steps, "scoring steps", disable=not progress):
        for i in range(0, len(ids), batch_size):
            chunk = ids[i:i + batch_size]
            x0 = torch.stack([store.load(vid, [step])[0] for vid in chunk])
            for vid, flag in zip(chunk, model.flags(x0, step).tolist()):
                flags[vid].append(int(flag))
        model.release(step)  # per-step bundles: one step's models in memory at a time
    for vid in ids:
        table["1" if store.get(vid).unsafe else "0"][vid] = flags[vid]
    return table
