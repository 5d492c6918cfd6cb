"""Training throughput with DataLoader decoding vs. the model alone, and memory over an epoch.

Prints, measured in one run:
  1. model-only step rate: clips/s of forward + backward + AdamW step on one batch already
     decoded in memory (the ceiling);
  2. training rate: clips/s of a real ``mmvgm.engine.train.train`` epoch over N videos
     decoded by DataLoader workers (mp4 -> uint8 -> resize/crop in the workers);
  3. their ratio (goal >= 0.85: decoding hidden behind compute);
  4. resident memory (main process + workers) sampled through the epoch: it must stay flat
     (O(batch)), unlike holding every decoded video in RAM (also printed, for scale).

    python benchmarks/bench_train.py                     # 500 clips, videomae_tiny at 64 px, CPU
    python benchmarks/bench_train.py --backbone videomae --size 224 --frames 16 --workers 8 --video-size 256
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def make_videos(root: Path, n: int, frames: int, size: int) -> Path:
    """``n`` MPEG-4 (mp4v) videos written with OpenCV, half ``real`` and half ``fake``."""
    from concurrent.futures import ThreadPoolExecutor

    import cv2

    from tests.media import make_frames

    def one(i: int) -> None:
        label = ("real", "fake")[i % 2]
        color = (0, 0, 0) if label == "real" else (150, 40, 0)
        path = root / label / f"{i:05d}.mp4"
        path.parent.mkdir(parents=True, exist_ok=True)
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 24, (size, size))
        for frame in make_frames(frames, size, size, seed=i, color=color):
            writer.write(np.ascontiguousarray(frame[:, :, ::-1]))
        writer.release()

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(one, range(n)))
    return root


SAMPLER = """
import os, sys, time, psutil
parent, every, out = psutil.Process(int(sys.argv[1])), float(sys.argv[2]), open(sys.argv[3], "w")
while True:
    main = parent.memory_info().rss
    kids = [c for c in parent.children(recursive=True) if c.pid != os.getpid()]
    uss = 0
    for child in kids:
        try:  # USS: a forked worker's RSS double-counts the pages it shares with the parent
            uss += child.memory_full_info().uss
        except psutil.Error:
            pass
    out.write(f"{time.monotonic()} {main} {main + uss} {len(kids)}\\n")
    out.flush()
    time.sleep(every)
"""


class RssSampler:
    """Samples RSS of this process and its children every ``every`` seconds, from another
    process: a sampling thread in this one would take the interpreter lock from the training
    loop it measures (seen on the GPU machine: ratio 0.79 with a thread, 0.86 without)."""

    def __init__(self, every: float = 0.1) -> None:
        self.every, self.samples = every, []
        self._file = Path(tempfile.mkstemp(prefix="bench-rss-")[1])
        self._proc = None

    def start(self) -> None:
        self._proc = subprocess.Popen([sys.executable, "-c", SAMPLER, str(os.getpid()), str(self.every),
                                       str(self._file)])
        while self._file.stat().st_size == 0:  # the first sample is in: the sampler is running
            time.sleep(0.01)

    def stop(self) -> None:
        self._proc.terminate()
        self._proc.wait()
        rows = [line.split() for line in self._file.read_text().splitlines()]
        self.samples = [(float(t), int(m), int(a), int(n)) for t, m, a, n in (r for r in rows if len(r) == 4)]
        self._file.unlink()


def model_only_rate(cfg: dict, steps: int) -> float:
    """forward + backward + AdamW step on one in-memory batch, same model, transform and precision."""
    from mmvgm.data.transforms import VideoTransform
    from mmvgm.models import build_model
    from mmvgm.models.registry import resolve_backbone_config
    from mmvgm.predict.scoring import autocast
    from mmvgm.runtime import precision_dtype

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    bcfg = resolve_backbone_config(cfg["backbone"], frames=cfg["frames"], size=cfg["size"])
    model = build_model({"backbone": bcfg, "task": "detect"}).to(device).train()
    transform = VideoTransform.from_config(bcfg["preprocess"])
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
    b = cfg["batch_size"]
    clips = torch.randint(0, 255, (b, bcfg["frames"], 3, bcfg["size"], bcfg["size"]), dtype=torch.uint8, device=device)
    labels = torch.arange(b, device=device) % 2
    dtype = precision_dtype("auto", device)  # what train()'s default mixed_precision autocasts to

    def step() -> None:
        with autocast(device, dtype):
            out = model(transform.normalize(clips))
        loss = model.loss(out, labels)
        loss.backward()
        opt.step()
        opt.zero_grad()

    for _ in range(3):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for i in range(steps):
        step()
        if i == steps // 2 - 1 and device.type == "cuda":
            torch.cuda.synchronize()
            t_half = time.perf_counter()
    if device.type == "cuda":
        torch.cuda.synchronize()
    end = time.perf_counter()
    if device.type == "cuda":  # a GPU may slow down (clocks, power) under sustained load
        print(f"  model-only: {steps // 2 * b / (t_half - t0):.1f} clips/s in the first half of "
              f"{steps} steps, {(steps - steps // 2) * b / (end - t_half):.1f} in the second")
    return steps * b / (end - t0)


def loader_only_rate(cfg: dict, limit: int) -> float:
    """clips/s of the DataLoader alone (decode + resize/crop in workers), no model."""
    from mmvgm.data.dataset import VideoDataset, make_loader
    from mmvgm.io.discovery import discover
    from mmvgm.data.transforms import VideoTransform
    from mmvgm.models.registry import resolve_backbone_config

    bcfg = resolve_backbone_config(cfg["backbone"], frames=cfg["frames"], size=cfg["size"])
    samples = discover(cfg["data"])[:limit]
    ds = VideoDataset(samples, {"real": 0, "fake": 1}, num_frames=bcfg["frames"],
                      transform=VideoTransform.from_config(bcfg["preprocess"]))
    loader = make_loader(ds, cfg["batch_size"], workers=cfg["workers"])  # the factory training's loaders come from
    t0, n = time.perf_counter(), 0
    for batch in loader:
        n += batch.size
    return n / (time.perf_counter() - t0)


def print_memory(samples: np.ndarray, loop_end: float, args: argparse.Namespace) -> None:
    # the training loop: from the first DataLoader worker to the start of validation
    start = samples[samples[:, 3] > 0][0, 0] if (samples[:, 3] > 0).any() else samples[0, 0]
    loop = samples[(samples[:, 0] >= start) & (samples[:, 0] <= loop_end)]
    if len(loop) < 8:
        print(f"memory: {len(loop)} samples in the loop (--rss-every {args.rss_every}): not reported")
        return
    loop[:, 0] -= start
    marks = [loop[min(len(loop) - 1, int(q * (len(loop) - 1)))] for q in (0.1, 0.25, 0.5, 0.75, 1.0)]
    held = args.clips * args.video_frames * args.video_size ** 2 * 3

    print("RSS in the training loop (MiB, main RSS / + workers' USS) at 10%, 25%, 50%, 75%, 100% of it:")
    print("   " + "  ".join(f"{m / 2**20:.0f}/{a / 2**20:.0f}" for _, m, a, _ in marks))
    t_end = loop[-1, 0]
    # workers start (and fill their prefetch queues) in the first part: compare the second
    # quarter's peak with the last quarter's to see growth per clip
    q2 = loop[(loop[:, 0] >= t_end * 0.25) & (loop[:, 0] < t_end * 0.5)][:, 2].max()
    q4 = loop[loop[:, 0] >= t_end * 0.75][:, 2].max()
    print(f"peak RSS in the loop: main {loop[:, 1].max() / 2**20:.0f} MiB, main + workers {loop[:, 2].max() / 2**20:.0f} MiB "
          f"(whole run {samples[:, 2].max() / 2**20:.0f}); last quarter vs second quarter: {(q4 - q2) / 2**20:+.0f} MiB")
    print(f"(holding all {args.clips} decoded videos in RAM, as the research code did, would need "
          f"{held / 2**20:.0f} MiB more)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=500)
    ap.add_argument("--backbone", default="videomae_tiny")
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--video-size", type=int, default=80, help="side of the synthetic videos (resized by the transform)")
    ap.add_argument("--video-frames", type=int, default=24)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--model-steps", type=int, default=40)
    ap.add_argument("--rss-every", type=float, default=0.1,
                    help="seconds between memory samples (the sampler thread shares the main process)")
    ap.add_argument("--data", default=None, help="reuse a dataset folder instead of generating one")
    ap.add_argument("--workdir", default=None, help="where data/ and run/ go [default: a temp dir]")
    args = ap.parse_args()

    from mmvgm.engine.train import train

    tmp = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="mmvgm-bench-"))
    data = Path(args.data) if args.data else None
    if data is None:
        t0 = time.perf_counter()
        # the train split gets ~98% of the videos: generate enough for `clips` training clips
        data = make_videos(tmp / "data", int(np.ceil(args.clips / 0.98)) + 2, args.video_frames, args.video_size)
        print(f"generated {sum(1 for _ in data.rglob('*.mp4'))} videos ({args.video_frames} frames, "
              f"{args.video_size}x{args.video_size}) in {time.perf_counter() - t0:.1f}s")
    cfg = {"backbone": args.backbone, "task": "detect", "data": str(data), "epochs": 1, "frames": args.frames,
           "size": args.size, "batch_size": args.batch_size, "workers": args.workers, "out": str(tmp / "run"),
           "progress": False, "lr": 1e-5, "split": {"ratios": [0.98, 0.02, 0.0], "seed": 2024, "duplicates": "off"},
           "calibration": {"threshold": 0.5}}

    threads_before = torch.get_num_threads()
    before = [model_only_rate(cfg, args.model_steps) for _ in range(2)]

    import mmvgm.engine.evaluate as evaluate_module

    validation_started = []
    real_predict = evaluate_module.predict

    def marking_predict(*a, **k):  # the first validation marks the end of the training loop
        validation_started.append(time.monotonic())  # the sampler's clock
        return real_predict(*a, **k)

    evaluate_module.predict = marking_predict
    sampler = RssSampler(args.rss_every)
    sampler.start()
    result = train(cfg)
    sampler.stop()
    evaluate_module.predict = real_predict
    rate = result.history[0]["train_clips_per_s"]
    loop_threads = result.history[0].get("cpu_threads") or threads_before  # train()'s CPU split
    torch.set_num_threads(loop_threads)
    after = model_only_rate(cfg, args.model_steps)
    torch.set_num_threads(threads_before)
    again = [model_only_rate(cfg, args.model_steps) for _ in range(2)]
    # measured twice before and twice after the loop: the same steps vary from run to run
    # (benchmarks/README.md, "Training"); the median is the ceiling, the best is printed too
    ceiling = statistics.median(before + again)
    loader_rate = loader_only_rate(cfg, args.clips)

    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"cpu ({psutil.cpu_count()} cores)"
    print(f"device {device}, torch threads {threads_before}, backbone {args.backbone} "
          f"({args.frames}x{args.size}px), batch {args.batch_size}, workers {args.workers}, "
          f"{result.history[0]['step'] * args.batch_size} train clips")
    print(f"model-only step rate : {ceiling:8.1f} clips/s   (median; measured before "
          f"{' '.join(f'{r:.1f}' for r in before)}, after {' '.join(f'{r:.1f}' for r in again)}; "
          f"{after:.1f} with the {loop_threads} compute thread(s) the loop keeps)")
    steady = result.history[0].get("train_clips_per_s_steady") or rate
    print(f"loop with DataLoader : {rate:8.1f} clips/s over the epoch, {steady:.1f} after the first step "
          f"(worker start-up excluded)")
    h = result.history[0]
    if h.get("train_steady_s"):
        print(f"waiting for data     : {h['train_data_wait_s']:8.2f} s of the {h['train_steady_s']:.2f} s loop after "
              f"the first step ({h['train_data_wait_s'] / h['train_steady_s']:.1%}; the rest is the training step)")
    print(f"DataLoader alone     : {loader_rate:8.1f} clips/s   (decode + resize/crop, {args.workers} workers, no model)")
    print(f"ratio                : {steady / ceiling:8.3f}   (goal >= 0.85; {rate / ceiling:.3f} with start-up; "
          f"{steady / max(before + again):.3f} against the best model-only run)")
    if loop_threads != threads_before:
        print(f"ratio, same threads  : {steady / after:8.3f}   (CPU: the workers' cores are not the model's; "
              f"this is decoding hidden behind the compute it shares the machine with)")
    print_memory(np.array(sampler.samples), validation_started[0], args)


if __name__ == "__main__":
    main()
