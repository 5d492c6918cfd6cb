"""Benchmark of `mmvgm protect`'s attack schedule and per-step cost (prints ratios; asserts nothing).

1. Steps ratio: how many steps mmvgm's default schedule (Adam-normalised with beta1 0.5,
   step eps decayed by a cosine, random start) needs to reach the embedding shift that the research schedule
   (sign-PGD, fixed step 0.5/255 in pixels, 1000 steps, same pixel eps) reaches, / 1000.
   Goal <= 0.25. The default schedule's length changes its decay, so each candidate length S
   is a separate run; the first S in the grid that reaches the research shift (within a
   relative 1e-4, i.e. float32 noise of the cosine) is reported; both values are printed.
2. Seconds per attack step / seconds of one forward+backward of the same encoder. Goal <= 1.1.

Encoders (random weights, no downloads): a tiny CLIP vision tower (CLIPVisionModelWithProjection,
hidden 64, 2 layers, 64 px) and timm's ResNet-50 with the image resized to --resnet-size px
(default 64, so the run fits 2 CPU cores in a few minutes; use 224 on a GPU).

    python benchmarks/bench_protect.py [--device cuda] [--resnet-size 224] [--mode directed|undirected|both]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mmvgm.attacks.encoders import CLIPVisionEncoder, TimmEncoder  # noqa: E402
from mmvgm.attacks.protect import EmbeddingPGD, embed  # noqa: E402

EPS = 4 / 255
RESEARCH_STEPS = 1000
GRID = (50, 100, 150, 200, 250, 300)
RTOL = 1e-4


def tiny_clip() -> CLIPVisionEncoder:
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    cfg = CLIPVisionConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                           image_size=64, patch_size=8, projection_dim=32)
    return CLIPVisionEncoder(CLIPVisionModelWithProjection(cfg), size=64, name="clip")


def resnet50(size: int) -> TimmEncoder:
    import timm

    enc = TimmEncoder(timm.create_model("resnet50", pretrained=False, num_classes=0), name="resnet50")
    enc.size = (size, size)
    return enc


def shift(encoder, adv, x0, target) -> float:
    """Directed: gain in cosine to the target. Undirected: 1 - cosine to the original."""
    ref = embed(encoder, target if target is not None else x0)

    def cos(x):
        emb = embed(encoder, x)
        return sum(torch.nn.functional.cosine_similarity(emb[k], ref[k]).mean().item() for k in ref) / len(ref)

    return cos(adv) - cos(x0) if target is not None else 1 - cos(adv)


def run(encoder, x0, target, steps, **kw) -> float:
    return shift(encoder, EmbeddingPGD(encoder, eps=EPS, steps=steps, seed=0, **kw)(x0, target), x0, target)


def steps_ratio(encoder, x0, target) -> tuple:
    t0 = time.perf_counter()
    research = run(encoder, x0, target, RESEARCH_STEPS, schedule="sign", step_size=0.5 / 255,
                   random_start=target is None)  # undirected needs a start off x0 (no gradient at x0)
    t_research = time.perf_counter() - t0
    reached, seen = None, []
    for s in GRID:
        value = run(encoder, x0, target, s)  # the defaults: adam, beta1 0.5, step eps with cosine decay
        seen.append((s, value))
        if value >= research * (1 - RTOL):
            reached = s
            break
    return research, reached, seen, t_research


def seconds_per_step_ratio(encoder, x0, target, steps: int, repeats: int = 3) -> tuple:
    def fwd_bwd():
        x = x0.clone().requires_grad_(True)
        out = encoder(x)
        sum(v.sum() for v in out.values()).backward()

    def sync():
        if x0.device.type == "cuda":
            torch.cuda.synchronize()

    for _ in range(3):
        fwd_bwd()
    sync()
    fb = []
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(steps):
            fwd_bwd()
        sync()
        fb.append((time.perf_counter() - t) / steps)
    attack = EmbeddingPGD(encoder, eps=EPS, steps=steps, seed=0)
    per_step = []
    for _ in range(repeats):
        t = time.perf_counter()
        attack(x0, target)
        sync()
        per_step.append((time.perf_counter() - t) / steps)
    return statistics.median(per_step), statistics.median(fb)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--resnet-size", type=int, default=64)
    ap.add_argument("--image-size", type=int, default=96, help="side of the (square) test image")
    ap.add_argument("--mode", choices=["directed", "undirected", "both"], default="directed")
    ap.add_argument("--encoders", default="clip,resnet50")
    args = ap.parse_args()
    torch.manual_seed(0)
    dev = torch.device(args.device)
    builders = {"clip": tiny_clip, "resnet50": lambda: resnet50(args.resnet_size)}
    g = torch.Generator().manual_seed(1)
    smooth = torch.nn.functional.interpolate(torch.rand(2, 3, 12, 12, generator=g), size=args.image_size,
                                             mode="bilinear", align_corners=False)
    x0, tgt = smooth[:1].to(dev), smooth[1:].to(dev)
    modes = ["directed", "undirected"] if args.mode == "both" else [args.mode]
    print(f"device {dev}, torch threads {torch.get_num_threads()}, image {args.image_size}px, eps 4/255, "
          f"resnet50 input {args.resnet_size}px")
    for name in args.encoders.split(","):
        encoder = builders[name]().to(dev).eval().requires_grad_(False)
        for mode in modes:
            target = tgt if mode == "directed" else None
            research, reached, seen, t_research = steps_ratio(encoder, x0, target)
            metric = "gain in cos to target" if target is not None else "1 - cos to original"
            trail = ", ".join(f"{s}: {v:.6g}" for s, v in seen)
            ratio = f"{reached / RESEARCH_STEPS:.3f}" if reached else f"> {GRID[-1] / RESEARCH_STEPS:.3f}"
            print(f"[{name} {mode}] research sign-PGD 1000 steps ({t_research:.0f}s): {metric} {research:.6g}; "
                  f"default schedule by length: {trail}")
            print(f"[{name} {mode}] steps ratio (default / research) = {ratio}  (goal <= 0.25)")
        per_step, fb = seconds_per_step_ratio(encoder, x0, tgt, steps=20)
        print(f"[{name}] seconds per attack step {per_step * 1e3:.1f} ms / forward+backward {fb * 1e3:.1f} ms "
              f"= {per_step / fb:.3f}  (goal <= 1.1)")


if __name__ == "__main__":
    main()
