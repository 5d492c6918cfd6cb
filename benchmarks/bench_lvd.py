"""LVD benchmark: conditioned vs per-step (disk, training time) and the guard's cost per step.

Prints, measured in one run:

1. Disk size and training time of ``conditioned`` against ``per-step`` over the same measured
   steps and the 5 categories, then extrapolated to the research design (50 steps x 5 categories
   = 250 models). Per-step cost is linear in the number of models; ``conditioned`` over all steps
   is linear in steps (it sees every (video, step) pair per epoch); with k steps per video (the
   default config's 4) its epoch does not grow with steps. Accuracy: ``bench_lvd_parity.py``.
   Goal: <= 1/50 of the 250-model design.
2. The guard's cost per denoising step (x0 capture + detector + rule, worst case: a step where
   the detector runs) as a ratio to one UNet step of a full-size AnimateDiff UNet (SD-1.5 UNet +
   default MotionAdapter, random init, classifier-free guidance batch 2) at the stated
   resolution. Goal: <= 0.05.

    python benchmarks/bench_lvd.py                      # CPU: 8 frames, 16x16 latents (128 px)
    python benchmarks/bench_lvd.py --frames 16 --latent 64 --device cuda   # MagicTime: 512 px
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mmvgm.lvd.guard import LatentGuard  # noqa: E402
from mmvgm.lvd.store import TrajectoryWriter, category_names  # noqa: E402
from mmvgm.lvd.train import train_lvd  # noqa: E402
from mmvgm.runtime import autocast_dtype  # noqa: E402

RESEARCH_STEPS, RESEARCH_CATEGORIES = 50, 5


def make_store(root: Path, n: int, steps: int, frames: int, latent: int) -> Path:
    cats = category_names()
    g = torch.Generator().manual_seed(0)
    with TrajectoryWriter(root, cats) as w:
        for i in range(n):
            x = torch.randn(steps, 4, frames, latent, latent, generator=g)
            labels = [] if i % 2 == 0 else [cats[(i // 2) % len(cats)]]
            if labels:
                x[:, cats.index(labels[0]) % 4] += 1.0
            w.add(f"v{i:04d}", x, labels)
    return root


def backbone(args) -> dict:
    if args.backbone != "small":
        return args.backbone
    # a mid-size VideoMAE on latents (the disk ratio does not depend on the backbone's size)
    return {"base": "videomae", "model": {"patch_size": args.patch, "hidden_size": 192, "num_hidden_layers": 4,
                                          "num_attention_heads": 4, "intermediate_size": 384}}


def bench_training(args, root: Path) -> "LVDModel":  # noqa: F821
    store = make_store(root / "traj", args.videos, args.steps, args.frames, args.latent)
    common = dict(backbone=backbone(args), epochs=args.epochs, batch_size=args.batch_size, device=args.device,
                  progress=False, steps=f"0-{args.steps - 1}", ratios=(0.7, 0.15, 0.15))
    if args.guard_only:
        return train_lvd(store, root / "condk", mode="conditioned", steps_per_video=args.steps_per_video, **common)[0]
    _, ps = train_lvd(store, root / "per_step", mode="per-step", **common)
    cond_model, cd = train_lvd(store, root / "cond", mode="conditioned", **common)
    _, c1 = train_lvd(store, root / "condk", mode="conditioned", steps_per_video=args.steps_per_video, **common)
    research_models = RESEARCH_STEPS * RESEARCH_CATEGORIES
    per_model_s = ps["train_seconds"] / ps["models"]
    per_model_b = ps["bytes"] / ps["models"]
    ps_s, ps_b = per_model_s * research_models, per_model_b * research_models
    cd_s = cd["train_seconds"] * RESEARCH_STEPS / args.steps
    # k steps per video: the measured run drew min(k, steps) per video; at 50 steps it draws k
    ck_s = c1["train_seconds"] * args.steps_per_video / min(args.steps_per_video, args.steps)
    print(f"\n== training: {args.videos} videos, latents 4x{args.frames}x{args.latent}x{args.latent}, "
          f"{args.steps} steps x {RESEARCH_CATEGORIES} categories measured, {args.epochs} epoch(s), "
          f"device {args.device} ==")
    print(f"{'mode':34s} {'models':>6s} {'measured s':>10s} {'MB':>9s} | {'@50 steps x 5 cat: s':>20s} {'MB':>10s}")
    print(f"{'per-step (research design)':34s} {ps['models']:6d} {ps['train_seconds']:10.2f} {ps['bytes']/1e6:9.2f} | "
          f"{ps_s:20.1f} {ps_b/1e6:10.1f}")
    print(f"{'conditioned, all steps/epoch':34s} {cd['models']:6d} {cd['train_seconds']:10.2f} {cd['bytes']/1e6:9.2f} | "
          f"{cd_s:20.1f} {cd['bytes']/1e6:10.1f}")
    k = f"conditioned, {args.steps_per_video} steps/video/epoch"
    print(f"{k:34s} {c1['models']:6d} {c1['train_seconds']:10.2f} "
          f"{c1['bytes']/1e6:9.2f} | {ck_s:20.1f} {c1['bytes']/1e6:10.1f}")
    print(f"disk ratio conditioned / 250 models: {cd['bytes'] / ps_b:.4f} (goal <= {1/50:.4f})")
    print(f"time ratio conditioned (all steps) / 250 models: {cd_s / ps_s:.4f}; "
          f"({args.steps_per_video} steps/video/epoch, the default): {ck_s / ps_s:.4f} "
          f"(goal <= {1/50:.4f})")
    print("extrapolation: per-step linear in models; conditioned(all) linear in steps; "
          "conditioned(k steps/video) constant in steps; same epochs everywhere")
    return cond_model


def full_animatediff_unet(device, dtype):
    from diffusers import MotionAdapter, UNet2DConditionModel, UNetMotionModel

    sd15 = dict(sample_size=64, in_channels=4, out_channels=4, layers_per_block=2,
                block_out_channels=(320, 640, 1280, 1280), cross_attention_dim=768, attention_head_dim=8,
                down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
                up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3)
    unet = UNetMotionModel.from_unet2d(UNet2DConditionModel(**sd15), MotionAdapter())
    return unet.to(device, dtype).eval()


def bench_guard(args, detector) -> None:
    from diffusers import DDIMScheduler

    device = torch.device(args.device)
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    unet = full_animatediff_unet(device, dtype)
    params = sum(p.numel() for p in unet.parameters()) / 1e9
    f, h = args.frames, args.latent
    latents = torch.randn(1, 4, f, h, h, device=device, dtype=dtype)
    # AnimateDiffPipeline repeats the prompt embeddings per frame before the UNet
    text = torch.randn(2 * f, 77, 768, device=device, dtype=dtype)
    sched = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="linear", clip_sample=False)
    sched.set_timesteps(50)
    t = sched.timesteps[0]

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    def unet_step():
        with torch.no_grad():
            noise = unet(torch.cat([latents] * 2), t, encoder_hidden_states=text).sample
        return noise.chunk(2)[0]

    unet_step()  # warm-up
    sync()
    unet_times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        eps = unet_step()
        sync()
        unet_times.append(time.perf_counter() - start)
    unet_s = statistics.median(unet_times)

    class Pipe:  # what the guard needs from a pipeline: the scheduler and the interrupt flag
        scheduler = sched
        _interrupt = False

    pipe = Pipe()
    plain_times = []
    for i in range(args.repeats * 3):
        start = time.perf_counter()
        sched.step(eps, t, latents)
        sync()
        plain_times.append(time.perf_counter() - start)
    plain_s = statistics.median(plain_times)
    print(f"\n== guard cost: full-size AnimateDiff UNet ({params:.2f} B params, SD-1.5 + MotionAdapter, "
          f"random init, {dtype}), {f} frames at {h * 8}x{h * 8} px ({h}x{h} latents), CFG batch 2, "
          f"device {device} ==")
    print(f"one UNet step: {unet_s * 1000:.1f} ms (median of {args.repeats})")
    bb = detector.cfg["backbone"]
    variants = [True, False] if device.type == "cuda" and detector.mode == "conditioned" else [False]
    for graphs in variants:
        detector.use_cuda_graphs = graphs
        # batch rule over 50 steps: the detector runs at every step measured (the worst case)
        guard = LatentGuard(pipe, detector.to(device), eta=50, lam=1.0, sequential=False)
        guard_times = []
        for i in range(min(args.repeats * 3, 50)):
            start = time.perf_counter()
            sched.step(eps, t, latents)  # wrapped: captures x0
            guard(pipe, i, t, {})
            sync()
            guard_times.append(time.perf_counter() - start)
        guard.detach()
        assert len(guard.result.flags[0]) == len(guard_times), "the detector must run at every measured step"
        # the first call of a new shape captures the CUDA graph: the median is the steady state
        guard_s = statistics.median(guard_times) - plain_s
        how = "CUDA graph replay" if graphs else "eager"
        print(f"guard per step (x0 capture + {detector.mode} {bb['backbone']} detector, hidden "
              f"{bb['model'].get('hidden_size')}, autocast {autocast_dtype(device)}, {how}, + rule): "
              f"{guard_s * 1000:.2f} ms")
        print(f"  of which detector calls: {guard.result.detector_seconds / len(guard_times) * 1000:.2f} ms "
              f"(mean, first call included)")
        print(f"ratio guard / UNet step ({how}): {guard_s / unet_s:.4f} (goal <= 0.05)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--latent", type=int, default=16, help="latent side (pixels / 8)")
    parser.add_argument("--steps", type=int, default=5, help="denoising steps measured")
    parser.add_argument("--videos", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--backbone", default="small", help="'small' (VideoMAE 192x4) or a backbone config")
    parser.add_argument("--patch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps-per-video", type=int, default=4, help="k of the step-sampled conditioned run "
                        "(configs/lvd/default.yaml's)")
    parser.add_argument("--skip-guard", action="store_true")
    parser.add_argument("--guard-only", action="store_true", help="train only the detector the guard uses")
    args = parser.parse_args()
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        model = bench_training(args, Path(tmp))
        if not args.skip_guard:
            bench_guard(args, model)


if __name__ == "__main__":
    main()
