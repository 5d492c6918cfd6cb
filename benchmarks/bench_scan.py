"""Scan throughput vs. model-only throughput, and peak memory vs. number of files.

Prints, measured in one run:

* for each model (tiny VideoMAE and base VideoMAE): files/s of ``run_scan`` over N videos
  (decoding in worker processes, overlapped with inference, one fsync'd JSONL line per
  file) against its two ceilings, measured in the same run: clips/s of the model alone on
  clips decoded beforehand (normalise + forward + calibration, same batch size) and files/s
  of the decoding workers alone (no model). Goal: scan >= 0.85 x min(model-only,
  decode-only) over 1000 files; for a tiny model decoding is the ceiling. The first scan
  starts the predictor's decoding workers; later scans reuse them, as a service that
  keeps its ``Predictor`` does (and as ``mmvgm scan``, which starts them while the
  checkpoint loads).
* because a shared machine's speed drifts by more than the goal's margin within a minute,
  ``--rounds`` rounds of (model-only, decode-only, scan) are measured back to back after the
  first scan, each round's ratio is printed, and the goal is read on their median. Each pass also prints
  the CPU it used per file, in the main process and in the workers: the scan's CPU against
  decode-only's is the overhead that speed drift cannot hide.
* peak RSS (main process, and the largest decoding worker) of a scan over two file
  counts, each in a fresh process: it must stay flat as the count grows.
* with ``--whole-scans N1,N2,...``: ``mmvgm scan`` in a fresh process, start-up included, over
  each count of files, its workers reading with torchcodec and with PyAV (the threshold
  ``TORCHCODEC_MIN_FILES_PER_WORKER`` forced to 0 and to never), interleaved: the figures behind
  that threshold. torchcodec's import costs seconds, which only enough files earn back.

On a 2-core CPU machine the base VideoMAE at 16 x 224 takes seconds per clip, so the
default there is reduced (``--base-frames 8 --base-size 112``); the printout says what ran.
With a GPU the base model runs at its real 16 x 224.

    python benchmarks/bench_scan.py                       # defaults for this machine
    python benchmarks/bench_scan.py --videos 200 --workers 4 --batch-size 16 --rounds 5
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def make_videos(folder: Path, count: int, frames: int, width: int, height: int, media: str = "mp4",
                distinct: int = 10) -> list:
    """``count`` videos (copies of ``distinct`` synthetic ones): H.264 mp4, or folders of JPEG
    frames (``media="jpg"``, for machines without PyAV)."""
    from mmvgm.demo import SOURCES, synthetic_frames, write_mp4

    folder.mkdir(parents=True, exist_ok=True)
    originals = []
    for i in range(min(distinct, count)):
        clip = synthetic_frames(SOURCES[i % len(SOURCES)], i, frames, height, width)
        if media == "mp4":
            originals.append(write_mp4(folder / f"orig{i:02d}.mp4", clip))
        else:
            import cv2

            d = folder / f"orig{i:02d}"
            d.mkdir()
            for j, frame in enumerate(clip):
                cv2.imwrite(str(d / f"frame_{j:04d}.jpg"), np.ascontiguousarray(frame[:, :, ::-1]))
            originals.append(d)
    paths = []
    for i in range(count):
        source = originals[i % len(originals)]
        dest = folder / f"clip{i:05d}{source.suffix}"
        if source.is_dir():
            shutil.copytree(source, dest)
        else:
            shutil.copyfile(source, dest)
        paths.append(dest)
    for original in originals:
        shutil.rmtree(original) if original.is_dir() else original.unlink()
    return paths


def make_predictor(workdir: Path, backbone: str, frames: int, size: int, device: str):
    from mmvgm.checkpoint.files import save_checkpoint
    from mmvgm.checkpoint.meta import CheckpointMeta
    from mmvgm.predict.predictor import Predictor
    from mmvgm.models import build_model
    from mmvgm.models.registry import resolve_backbone_config

    cfg = resolve_backbone_config(backbone, frames=frames, size=size)
    cfg["preprocess"] = {**cfg["preprocess"], "resize_shortest": size, "crop": size}
    model = build_model({"backbone": cfg, "task": "joint", "num_classes": 3})
    ckpt = save_checkpoint(workdir / f"ckpt-{backbone}", model, CheckpointMeta(
        model_cfg=model.config, task="joint", labels=["real", "a", "b", "c"],
        preprocess=model.preprocess, frames=frames, sampling="consecutive",
        calibration={"temperature": 1.0, "threshold": 0.5, "open_set_threshold": 0.5,
                     "trace_temperature": 1.0}))
    return Predictor.from_checkpoint(ckpt, device=None if device == "auto" else device)


def _sync(predictor) -> None:
    import torch

    if predictor.device.type == "cuda":
        torch.cuda.synchronize()


def decoded_batches(predictor, paths, batch_size: int) -> list:
    """Batches of clips decoded beforehand, in this process, for :func:`model_only_rate`."""
    import torch

    clips = [predictor.load_clip(p)[0] for p in paths]
    batches = [torch.stack(clips[i:i + batch_size]) for i in range(0, len(clips), batch_size)]
    if predictor.device.type == "cuda":
        batches = [b.pin_memory() for b in batches]
    return batches


def model_only_rate(predictor, batches: list) -> float:
    """clips/s of normalise + forward + calibration on clips decoded beforehand."""
    predictor.probabilities(batches[0])  # warm-up
    _sync(predictor)
    start = time.perf_counter()
    for batch in batches:
        predictor.probabilities(batch)
    _sync(predictor)
    return sum(len(b) for b in batches) / (time.perf_counter() - start)


class CpuUse:
    """CPU seconds used between ``start()`` and ``stop()`` by this process (all its threads)
    and by its child processes alive at ``stop()`` (decoding workers; sampled before they stop)."""

    def __init__(self) -> None:
        self.process = psutil.Process()
        self.main = self.workers = 0.0
        self._main0 = 0.0
        self._children0: dict = {}

    @staticmethod
    def _seconds(process: psutil.Process) -> float:
        times = process.cpu_times()
        return times.user + times.system

    def _children(self) -> dict:
        seconds = {}
        for child in self.process.children(recursive=True):
            try:
                seconds[child.pid] = self._seconds(child)
            except psutil.Error:
                pass
        return seconds

    def start(self) -> "CpuUse":
        self._main0, self._children0 = self._seconds(self.process), self._children()
        return self

    def stop(self) -> "CpuUse":
        self.main = self._seconds(self.process) - self._main0
        self.workers = sum(s - self._children0.get(pid, 0.0) for pid, s in self._children().items())
        return self

    def per_file_ms(self, files: int) -> str:
        return f"CPU per file: main {1e3 * self.main / files:.2f} ms, workers {1e3 * self.workers / files:.2f} ms"


def scan_rate(predictor, folder: Path, out: Path, batch_size: int, workers: int
              ) -> Tuple[float, Optional[float], CpuUse]:
    """files/s of the whole scan (worker start-up, decoding, inference, fsync'd writes),
    files/s after the first batch was written (worker start-up excluded; None for one batch),
    and the CPU the scan used."""
    from mmvgm.predict.scan import run_scan

    marks = []
    cpu = CpuUse().start()
    summary = run_scan(predictor, folder, out, batch_size=batch_size, workers=workers, progress=False,
                       on_batch=lambda batch: marks.append((time.perf_counter(), len(batch))))
    cpu.stop()
    assert summary.errors == 0, f"{summary.errors} files failed"
    steady = (sum(n for _, n in marks[1:]) / (marks[-1][0] - marks[0][0])) if len(marks) > 1 else None
    return (summary.scored + summary.errors) / summary.seconds, steady, cpu


def decode_only_rate(predictor, paths, batch_size: int, workers: int, verbose: bool = True
                     ) -> Tuple[float, CpuUse]:
    """files/s of the scan's decoding workers alone (decode + resize/crop, no model), and the
    CPU they and this process used."""
    import torch

    from mmvgm.data.dataset import collate_items
    from mmvgm.predict.pool import DecodePool, worker_chunk

    pool = DecodePool(predictor.dataset.__getitem__, collate_items, workers, torch.device("cpu"), persistent=False)
    requests = [(str(p), predictor.frames, predictor.sampling) for p in paths]
    cpu = CpuUse().start()
    start = time.perf_counter()
    n, n_first, first = 0, 0, None
    for chunk in pool.decode(requests, worker_chunk(batch_size, workers)):
        n += len(chunk.items)
        if first is None:
            first, n_first = time.perf_counter(), n
    end = time.perf_counter()
    cpu.stop()
    pool.done()  # a pool that is not persistent stops its workers here
    if verbose and n > n_first:
        print(f"      decode-only: first chunk after {first - start:.2f} s (worker start-up), then "
              f"{(n - n_first) / (end - first):.1f} files/s")
    return n / (end - start), cpu


def rounds(predictor, folder: Path, paths, batches: list, work: Path, name: str, args) -> List[float]:
    """``args.rounds`` back-to-back rounds of model-only, decode-only and a scan with the
    workers up; prints each round and returns each round's scan / min(model, decode)."""
    ratios = []
    for r in range(args.rounds):
        model = model_only_rate(predictor, batches)
        decode, decode_cpu = decode_only_rate(predictor, paths, args.batch_size, args.workers, verbose=False)
        scan, _, scan_cpu = scan_rate(predictor, folder, work / f"out-{name}-{r}.jsonl", args.batch_size,
                                      args.workers)
        ratios.append(scan / min(model, decode))
        print(f"      round {r + 1}: model-only {model:7.1f} clips/s, decode-only {decode:7.1f} files/s "
              f"({decode_cpu.per_file_ms(len(paths))}), scan {scan:7.1f} files/s "
              f"({scan_cpu.per_file_ms(len(paths))}): {ratios[-1]:.2f}")
    return ratios


class PeakRSS:
    """Samples the resident memory of this process and of its children (decode workers)."""

    def __init__(self, interval: float = 0.02) -> None:
        self.process = psutil.Process()
        self.interval = interval
        self.main = self.workers = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.main = max(self.main, self.process.memory_info().rss)
                kids = [c.memory_info().rss for c in self.process.children(recursive=True)]
                self.workers = max(self.workers, max(kids, default=0))
            except psutil.Error:
                pass
            time.sleep(self.interval)

    def __enter__(self) -> "PeakRSS":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def rss_child(count: int, batch_size: int, workers: int, media: str) -> None:
    """Run inside a fresh process: scan ``count`` files, print peak RSS during the scan as JSON."""
    work = Path(tempfile.mkdtemp(prefix="bench-scan-rss-"))
    try:
        make_videos(work / "videos", count, frames=32, width=320, height=240, media=media)
        predictor = make_predictor(work, "videomae_tiny", 8, 32, "cpu")
        before = psutil.Process().memory_info().rss
        with PeakRSS() as peak:
            scan_rate(predictor, work / "videos", work / "out.jsonl", batch_size, workers)
        print(json.dumps({"count": count, "before_scan_mb": before / 2**20, "main_mb": peak.main / 2**20,
                          "worker_mb": peak.workers / 2**20}))
    finally:
        shutil.rmtree(work, ignore_errors=True)


_WHOLE_SCAN = ("import runpy, sys\n"
               "import mmvgm.runtime.workers as workers\n"
               "workers.TORCHCODEC_MIN_FILES_PER_WORKER = int(sys.argv[1])\n"
               "sys.argv = ['mmvgm', 'scan', *sys.argv[2:], '-q']\n"
               "runpy.run_module('mmvgm', run_name='__main__')\n")


def whole_scans(work: Path, counts: List[int], workers: int, runs: int = 3) -> None:
    """``mmvgm scan`` wall time, start-up included, with torchcodec in the workers and without."""
    import statistics

    predictor = make_predictor(work, "videomae_tiny", 8, 32, "cpu")
    checkpoint = predictor.path
    print(f"whole scans (mmvgm scan in a fresh process, tiny model, {workers} workers, median of {runs}):")
    for count in counts:
        folder = work / f"whole-{count}"
        make_videos(folder, count, frames=32, width=320, height=240)
        seconds = {"torchcodec": [], "PyAV": []}
        for run in range(runs):
            for name, minimum in (("torchcodec", 0), ("PyAV", 10**12)):
                out = work / f"whole-{count}-{name}-{run}.jsonl"
                start = time.perf_counter()
                subprocess.run([sys.executable, "-c", _WHOLE_SCAN, str(minimum), str(folder), "-c", str(checkpoint),
                                "--out", str(out), "-j", str(workers)], check=True, cwd=ROOT, capture_output=True)
                seconds[name].append(time.perf_counter() - start)
        tc, av = (statistics.median(seconds[k]) for k in ("torchcodec", "PyAV"))
        print(f"  {count:6d} files: torchcodec {tc:6.2f} s, PyAV {av:6.2f} s: PyAV / torchcodec {av / tc:.2f} "
              f"({count / max(workers, 1):.0f} files per worker)")
        shutil.rmtree(folder)


def main() -> None:
    import torch

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--models", default="tiny,base")
    parser.add_argument("--base-frames", type=int, default=None, help="default: 16 on GPU, 8 on CPU")
    parser.add_argument("--base-size", type=int, default=None, help="default: 224 on GPU, 112 on CPU")
    parser.add_argument("--base-videos", type=int, default=None, help="default: --videos (GPU), 48 (CPU)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="back-to-back (model-only, decode-only, scan) rounds after the first scan; "
                             "the goal is read on their median ratio (0: none)")
    parser.add_argument("--rss-counts", default="100,400")
    parser.add_argument("--media", choices=("mp4", "jpg"), default="mp4",
                        help="H.264 mp4 files (needs PyAV to write) or folders of JPEG frames")
    parser.add_argument("--start-method", choices=("default", "fork", "forkserver", "spawn"), default="default",
                        help="how decoding workers start (sets MMVGM_WORKER_START for the scan)")
    parser.add_argument("--whole-scans", default="", help="file counts for whole mmvgm scan runs with and "
                                                                "without torchcodec, e.g. 200,1000,2000,4000")
    parser.add_argument("--rss-child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.start_method != "default":
        os.environ["MMVGM_WORKER_START"] = args.start_method
    if args.rss_child is not None:
        rss_child(args.rss_child, args.batch_size, args.workers, args.media)
        return

    gpu = torch.cuda.is_available() and args.device != "cpu"
    base_frames = args.base_frames or (16 if gpu else 8)
    base_size = args.base_size or (224 if gpu else 112)
    base_videos = args.base_videos or (args.videos if gpu else 48)
    specs = {"tiny": ("videomae_tiny", 8, 32, args.videos),
             "base": ("videomae", base_frames, base_size, base_videos)}
    print(f"machine: {os.cpu_count()} CPU cores, "
          f"{torch.cuda.get_device_name(0) if gpu else 'no GPU'}; torch threads {torch.get_num_threads()}; "
          f"batch {args.batch_size}, {args.workers} decode workers started by {args.start_method}")
    work = Path(tempfile.mkdtemp(prefix="bench-scan-"))
    try:
        for name in args.models.split(","):
            backbone, frames, size, count = specs[name]
            folder = work / f"videos-{name}"
            paths = make_videos(folder, count, frames=max(32, frames), width=320, height=240,
                                media=args.media)
            predictor = make_predictor(work, backbone, frames, size, args.device)
            batches = decoded_batches(predictor, paths[: min(count, 200)], args.batch_size)
            model = model_only_rate(predictor, batches)
            decode, _ = decode_only_rate(predictor, paths, args.batch_size, args.workers)
            scan, steady, _ = scan_rate(predictor, folder, work / f"out-{name}.jsonl", args.batch_size,
                                        args.workers)
            reduced = "" if (name == "tiny" or (frames, size) == (16, 224)) else " (reduced from 16x224)"
            print(f"{name:5s} {backbone} {frames}x{size}{reduced}, {count} videos 320x240 {args.media}, "
                  f"device {predictor.device}: model-only {model:8.1f} clips/s, scan {scan:8.1f} files/s, "
                  f"ratio to model-only {scan / model:.2f}")
            if steady is not None:
                print(f"      after the first batch (worker start-up excluded): scan {steady:8.1f} files/s, "
                      f"ratio {steady / model:.2f}")
            print(f"      decode-only (workers, no model) {decode:8.1f} files/s: the first scan (worker "
                  f"start-up included) reaches {scan / min(model, decode):.2f} of min(model, decode), "
                  "its ceiling when both overlap")
            if args.rounds:
                print(f"      {args.rounds} rounds of model-only, decode-only and a scan, the predictor's "
                      "workers up:")
                ratios = rounds(predictor, folder, paths, batches, work, name, args)
                print(f"      scan / min(model, decode), median of {len(ratios)} rounds: "
                      f"{float(np.median(ratios)):.2f} (goal >= 0.85; rounds {min(ratios):.2f}-{max(ratios):.2f})")
            del predictor
        if args.whole_scans:
            whole_scans(work, [int(c) for c in args.whole_scans.split(",")], args.workers)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    results = []
    for count in [int(c) for c in args.rss_counts.split(",")]:
        proc = subprocess.run([sys.executable, __file__, "--rss-child", str(count), "--batch-size",
                               str(args.batch_size), "--workers", str(args.workers), "--media", args.media],
                              capture_output=True, text=True, check=True)
        results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    for r in results:
        print(f"peak RSS, tiny scan over {r['count']:5d} files: main {r['main_mb']:7.1f} MB "
              f"(before the scan {r['before_scan_mb']:.1f} MB), largest worker {r['worker_mb']:7.1f} MB")
    first, last = results[0], results[-1]
    print(f"peak RSS growth {first['count']} -> {last['count']} files: main x{last['main_mb'] / first['main_mb']:.2f}, "
          f"workers x{last['worker_mb'] / max(first['worker_mb'], 1e-9):.2f} (flat = ~1.0)")


if __name__ == "__main__":
    main()
