"""Throughput of mmvgm's VideoTransform vs. transformers' VideoMAEImageProcessor, one run.

    python benchmarks/bench_transforms.py [--clips 8] [--frames 16] [--height 480] [--width 640]

Prints clips/s for each path and ratios to the HF processor (same frames, same output up to
float rounding). On CUDA it also times the split used in training: geometric stage on CPU
(DataLoader workers), normalisation on the GPU.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch


def _rate(fn, clips: int, repeat: int) -> float:
    fn()  # warm-up (kernel selection, allocator)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return clips * repeat / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=8)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    from transformers import VideoMAEImageProcessor

    from mmvgm.data.transforms import VideoTransform

    rng = np.random.default_rng(0)
    videos = rng.integers(0, 256, (args.clips, args.frames, args.height, args.width, 3), dtype=np.uint8)
    hf = VideoMAEImageProcessor()
    ours = VideoTransform.preset("videomae")

    def run_hf():
        return [hf(list(v), return_tensors="pt")["pixel_values"] for v in videos]

    batch_cpu = torch.from_numpy(videos)
    ref = torch.cat(run_hf())
    diff = (ours(batch_cpu) - ref).abs().mean().item()
    results = {"hf VideoMAEImageProcessor, per clip, cpu": _rate(run_hf, args.clips, args.repeat),
               "VideoTransform, batched, cpu": _rate(lambda: ours(batch_cpu), args.clips, args.repeat)}
    if torch.cuda.is_available():
        batch_gpu = batch_cpu.cuda()
        geometric = ours.geometric(batch_cpu)
        results["VideoTransform, batched, cuda (decoded frames on GPU)"] = _rate(
            lambda: ours(batch_gpu), args.clips, args.repeat)
        results["geometric cpu + normalize cuda (training split)"] = _rate(
            lambda: ours.normalize(ours.geometric(batch_cpu).cuda(non_blocking=True)), args.clips, args.repeat)
        results["copy cropped uint8 batch to cuda + normalize"] = _rate(
            lambda: ours.normalize(geometric.cuda()), args.clips, args.repeat)
    base = results["hf VideoMAEImageProcessor, per clip, cpu"]
    print(f"{args.clips} clips x {args.frames} frames x {args.height}x{args.width}, "
          f"torch threads {torch.get_num_threads()}, mean |ours - hf| = {diff:.2e}")
    for name, rate in results.items():
        print(f"{name:<58} {rate:9.2f} clips/s   x{rate / base:6.2f} vs hf")
    uint8_mb = ours.geometric(batch_cpu).numel() / 2**20
    print(f"batch memory after geometric stage: uint8 {uint8_mb:.1f} MiB vs float32 {4 * uint8_mb:.1f} MiB (x4)")


if __name__ == "__main__":
    main()
