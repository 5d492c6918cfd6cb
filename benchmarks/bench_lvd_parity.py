"""LVD accuracy parity: does step-sampled ``conditioned`` training keep per-step accuracy at <= 1/50 of its cost?

The research design trains one binary detector per (category, denoising step): 50 steps x 5
categories = 250 models. ``conditioned`` trains one step-embedded, multi-label model; with
``steps_per_video=k`` each epoch sees only k random steps of every video, so its cost does not
grow with the number of steps. This script trains, on the same synthetic store, split, seed and
epochs:

* ``per-step``: every measured step x 5 categories (the research design, scaled down);
* ``conditioned``, all steps every epoch;
* ``conditioned``, k steps per video per epoch, for each k of ``--per-video``;

and prints, per mode: measured training seconds; the cost extrapolated to 50 steps x 5
categories (per-step: linear in models; conditioned over all steps: linear in steps;
conditioned with k steps per video: constant in steps) and its ratio to the 250-model design
(goal <= 1/50 = 0.02); on the held-out test split, the eta/lambda rule's accuracy, precision,
recall and F1 (``evaluate_flags``, classes balanced as in the research code), and the balanced
accuracy of each step's flag against the video label (mean over steps, and per step).

``--sampled-epochs`` gives the step-sampled runs more epochs than the others (default: the
same): at 50 steps x 5 categories, k steps per video for E' epochs stays within 1/50 of the
per-step design trained for E epochs while k * E' <= 5 * E (before per-model overheads).

The synthetic store mimics predicted-x0 trajectories. Every field below is a smooth
(spatially and temporally correlated, latent-like) Gaussian field with unit RMS. Each video has
its own content; an unsafe video (``--unsafe-fraction``, one category each, cycling through the
5) adds that category's fixed pattern times ``--signal``. The x0 prediction at step s is
``v_s * clean + sqrt(1 - v_s^2) * noise_s`` with visibility ``v_s = (s + 1) / steps`` and fresh
noise every step: early predictions are mostly noise, later ones approach the clean latent, so
the category signal grows with the step. The default ``--signal`` leaves the first steps near
chance and the last ones clearly but not perfectly separable.

    python benchmarks/bench_lvd_parity.py                          # 3 seeds, ~1.5 min on 2 CPU cores
    python benchmarks/bench_lvd_parity.py --seeds 0 --per-video 1 2 4 8 --sampled-epochs 10
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mmvgm.lvd.evaluate import FlagTable, evaluate_flags, flags_from_models  # noqa: E402
from mmvgm.lvd.store import TrajectoryWriter, category_names  # noqa: E402
from mmvgm.lvd.train import train_lvd  # noqa: E402
from mmvgm.runtime import package_versions  # noqa: E402

RESEARCH_STEPS, RESEARCH_CATEGORIES = 50, 5
GOAL = 1 / 50


def smooth_fields(num: int, frames: int, latent: int, g: torch.Generator) -> torch.Tensor:
    """(num, 4, frames, latent, latent) spatially/temporally correlated Gaussian fields, unit RMS each."""
    coarse = torch.randn(num, 4, max(frames // 2, 1), max(latent // 4, 1), max(latent // 4, 1), generator=g)
    smooth = F.interpolate(coarse, size=(frames, latent, latent), mode="trilinear", align_corners=False)
    return smooth / smooth.pow(2).mean(dim=(1, 2, 3, 4), keepdim=True).sqrt()


def make_store(root: Path, videos: int, steps: int, frames: int, latent: int, signal: float,
               unsafe_fraction: float, seed: int) -> Path:
    """A store of denoising-like trajectories (see the module docstring); returns ``root``."""
    cats = category_names()
    g = torch.Generator().manual_seed(seed)
    patterns = smooth_fields(len(cats), frames, latent, g)
    v = (torch.arange(1, steps + 1, dtype=torch.float32) / steps).view(steps, 1, 1, 1, 1)
    n_unsafe = round(videos * unsafe_fraction)
    with TrajectoryWriter(root, cats) as writer:
        for i in range(videos):
            labels = [cats[i % len(cats)]] if i < n_unsafe else []
            clean = smooth_fields(1, frames, latent, g)[0]
            if labels:
                clean = clean + signal * patterns[cats.index(labels[0])]
            noise = smooth_fields(steps, frames, latent, g)
            writer.add(f"v{i:04d}", v * clean + (1 - v ** 2).sqrt() * noise, labels)
    return root


def step_accuracy(table: FlagTable) -> List[float]:
    """Balanced accuracy of each step's flag against the video label (test videos, no subsampling)."""
    normal, unsafe = list(table["0"].values()), list(table["1"].values())
    steps = len((normal or unsafe)[0])
    out = []
    for s in range(steps):
        tnr = sum(1 - f[s] for f in normal) / len(normal)
        tpr = sum(f[s] for f in unsafe) / len(unsafe)
        out.append((tnr + tpr) / 2)
    return out


def backbone_config(name: str, hidden: Optional[int], patch: int) -> Union[str, dict]:
    """The backbone config ``name`` as is, or based on it with 1 layer of width ``hidden`` and ``patch``."""
    if hidden is None:
        return name
    return {"base": name, "model": {"patch_size": patch, "hidden_size": hidden, "num_hidden_layers": 1,
                                    "num_attention_heads": 2, "intermediate_size": 2 * hidden}}


def run_seed(args: argparse.Namespace, seed: int, tmp: Path) -> Dict[str, dict]:
    """Train and evaluate every mode on one store; ``{mode label: results}``."""
    store = make_store(tmp / f"traj{seed}", args.videos, args.steps, args.frames, args.latent, args.signal,
                       args.unsafe_fraction, seed)
    common = dict(steps=f"0-{args.steps - 1}", backbone=backbone_config(args.backbone, args.hidden, args.patch),
                  batch_size=args.batch_size, lr=args.lr, seed=seed, ratios=tuple(args.ratios), device="cpu",
                  progress=False)
    runs: Dict[str, dict] = {"per-step": dict(mode="per-step", epochs=args.epochs),
                             "conditioned, all steps": dict(mode="conditioned", epochs=args.epochs)}
    for k in args.per_video:
        runs[f"conditioned, {k} step(s)/video"] = dict(mode="conditioned", steps_per_video=k,
                                                       epochs=args.sampled_epochs)
    results: Dict[str, dict] = {}
    for i, (label, kwargs) in enumerate(runs.items()):
        out = tmp / f"models{seed}_{i}"
        _, summary = train_lvd(store, out, **kwargs, **common)
        table = flags_from_models(out, store, split="test", device="cpu", progress=False)
        rule = evaluate_flags(table, eta=args.eta or args.steps, lam=args.lam)
        seconds = summary["train_seconds"]
        if kwargs["mode"] == "per-step":
            research = seconds / summary["models"] * RESEARCH_STEPS * RESEARCH_CATEGORIES
        elif kwargs.get("steps_per_video") is None:
            research = seconds * RESEARCH_STEPS / args.steps
        else:
            research = seconds
        per_step = step_accuracy(table)
        results[label] = {"models": summary["models"], "seconds": seconds, "research_seconds": research,
                          "rule": rule, "step_acc": per_step, "step_acc_mean": statistics.fmean(per_step)}
        print(f"  seed {seed}: {label}: {seconds:.1f} s, rule acc {rule['accuracy']:.3f}, "
              f"step acc {results[label]['step_acc_mean']:.3f}", flush=True)
    return results


def mean_spread(values: Sequence[float], fmt: str) -> str:
    """``mean`` or ``mean±sd`` (sample sd over seeds)."""
    if len(values) == 1:
        return format(values[0], fmt)
    return f"{format(statistics.fmean(values), fmt)}±{format(statistics.stdev(values), fmt)}"


def report(args: argparse.Namespace, per_seed: Dict[int, Dict[str, dict]]) -> None:
    seeds = list(per_seed)
    labels = list(per_seed[seeds[0]])
    base = {s: per_seed[s]["per-step"]["research_seconds"] for s in seeds}
    first = per_seed[seeds[0]][labels[0]]["rule"]
    print(f"\n== LVD parity: {args.videos} videos ({args.unsafe_fraction:.0%} unsafe), latents "
          f"4x{args.frames}x{args.latent}x{args.latent}, {args.steps} steps x {RESEARCH_CATEGORIES} categories, "
          f"signal {args.signal}, {args.epochs} epoch(s) "
          f"({args.sampled_epochs} for k steps/video), batch {args.batch_size}, lr {args.lr}, "
          f"split {'/'.join(str(r) for r in args.ratios)}, seeds {seeds}, cpu x{torch.get_num_threads()} threads ==")
    print(f"test split per seed: {first['n_before_balancing']} before balancing, evaluated "
          f"{first['n_normal']}+{first['n_unsafe']}; rule eta={first['eta']}, lambda={first['lambda']:g} "
          f"(>= {first['required_flags']} flagged steps)")
    print("values: mean±sd over seeds" if len(seeds) > 1 else "values: one seed")
    header = (f"{'mode':30s} {'models':>6s} {'train s':>11s} {'@50x5 s':>13s} {'ratio':>15s} | "
              f"{'rule acc':>11s} {'prec':>11s} {'recall':>11s} {'f1':>11s} {'step acc':>11s}")
    print(header)
    print("-" * len(header))
    for label in labels:
        rows = [per_seed[s][label] for s in seeds]
        ratio = [r["research_seconds"] / base[s] for r, s in zip(rows, seeds)]
        print(f"{label:30s} {rows[0]['models']:6d} {mean_spread([r['seconds'] for r in rows], '.1f'):>11s} "
              f"{mean_spread([r['research_seconds'] for r in rows], '.1f'):>13s} "
              f"{mean_spread(ratio, '.4f'):>15s} | "
              + " ".join(f"{mean_spread([r['rule'][m] for r in rows], '.3f'):>11s}"
                         for m in ("accuracy", "precision", "recall", "f1"))
              + f" {mean_spread([r['step_acc_mean'] for r in rows], '.3f'):>11s}")
    print(f"ratio = cost extrapolated to {RESEARCH_STEPS} steps x {RESEARCH_CATEGORIES} categories / per-step's "
          f"(goal <= {GOAL:.2f}); per-step linear in models, conditioned (all) linear in steps, "
          "conditioned (k/video) constant in steps")
    print("\nstep flag balanced accuracy on test, per step (mean over seeds):")
    print(f"{'mode':30s} " + " ".join(f"{'s' + str(s):>5s}" for s in range(args.steps)))
    for label in labels:
        means = [statistics.fmean(per_seed[s][label]["step_acc"][i] for s in seeds) for i in range(args.steps)]
        print(f"{label:30s} " + " ".join(f"{m:5.2f}" for m in means))
    print(f"\nversions: {package_versions()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="store + training seeds [0 1 2]")
    parser.add_argument("--per-video", type=int, nargs="+", default=[1, 2, 4],
                        help="steps per video per epoch for the step-sampled conditioned runs [1 2 4]")
    parser.add_argument("--videos", type=int, default=200)
    parser.add_argument("--unsafe-fraction", type=float, default=0.5)
    parser.add_argument("--steps", type=int, default=8, help="denoising steps recorded and trained [8]")
    parser.add_argument("--frames", type=int, default=4)
    parser.add_argument("--latent", type=int, default=16, help="latent side [16]")
    parser.add_argument("--signal", type=float, default=1.0,
                        help="RMS of the category pattern relative to the content's [1.0]")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--sampled-epochs", type=int, default=None,
                        help="epochs of the k-steps-per-video runs [--epochs]")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--backbone", default="videomae_tiny", help="backbone config name [videomae_tiny]")
    parser.add_argument("--hidden", type=int, default=None,
                        help="replace the backbone's model by 1 layer of this width, 2 heads [keep the config's]")
    parser.add_argument("--patch", type=int, default=8, help="patch size with --hidden [8]")
    parser.add_argument("--ratios", type=float, nargs=3, default=[0.6, 0.2, 0.2], help="train/val/test [0.6 0.2 0.2]")
    parser.add_argument("--eta", type=int, default=None, help="rule window [all measured steps]")
    parser.add_argument("--lam", default="0.5", help="rule lambda [0.5]")
    args = parser.parse_args()
    args.sampled_epochs = args.sampled_epochs or args.epochs
    if args.eta is not None and not 1 <= args.eta <= args.steps:
        parser.error(f"--eta must be in 1..{args.steps}")
    if any(not 1 <= k <= args.steps for k in args.per_video):
        parser.error(f"--per-video values must be in 1..{args.steps}")
    per_seed: Dict[int, Dict[str, dict]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            per_seed[seed] = run_seed(args, seed, Path(tmp))
    report(args, per_seed)


if __name__ == "__main__":
    main()
