"""Clip extraction speed of ``mmvgm.io.read_clip`` against full decodes of the same file.

Makes a 10 s 480p H.264 file with PyAV in a temporary folder, then times, interleaved and
repeated (best of N, so a busy machine hurts every contender alike):

- ``full decode``: OpenCV reads every frame (decode + its BGR conversion), nothing kept;
- ``research``: decode every frame, convert every frame to float RGB, stack, then take
  16 frames (what the research code did);
- ``read_clip`` with 16 frames, ``uniform`` and ``consecutive``, with the auto backend (PyAV,
  decoding from the container that counted the packets) and with OpenCV;
- late start: ``read_clip`` consecutive at ``start=frames-32`` against ``start=0`` (auto
  backend, which seeks with PyAV to the keyframe before the start; OpenCV decodes from 0);
- many short files (a scan's load): 8-frame clips with one decoder thread, auto (one open
  per file) against OpenCV (the file opened twice: PyAV counts, OpenCV decodes);
- per file against torchcodec (when it can run): the files the I/O tests make (every
  container), a short 240p file, a long 240p file and the 480p file, 16-frame consecutive and
  uniform clips, one decoder thread: ``read_clip`` (auto, and PyAV alone) against torchcodec's
  own ``VideoDecoder`` (exact seek mode) + ``get_frames_at`` on the same file.

Prints clip-extraction rates as ratios measured in this one run. Goals: uniform read_clip
>= 0.8x the full-decode rate, >= 3x the research pipeline, and per file at most 1.2x
torchcodec's time in both modes. Nothing is asserted.

    python benchmarks/bench_io.py [--seconds 10] [--repeats 3]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, uninstalled


def make_video(path: Path, seconds: float, fps: int = 30, width: int = 854, height: int = 480) -> Path:
    """Textured, moving content (so the encoder and decoder do real work), default GOP."""
    import av

    rng = np.random.default_rng(0)
    texture = rng.integers(0, 256, size=(height, width * 2, 3), dtype=np.uint8)
    texture = (texture.astype(np.uint16) + np.roll(texture, 1, axis=1)) // 2  # less pure noise
    yy, xx = np.mgrid[0:height, 0:width]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": "23", "preset": "veryfast"}
        for i in range(int(seconds * fps)):
            frame = texture[:, i * 4 % width:i * 4 % width + width].astype(np.uint8)
            cx, cy = (i * 7) % width, height // 2 + int(100 * np.sin(i / 10))
            frame[(xx - cx) ** 2 + (yy - cy) ** 2 < 60 ** 2] = (255, 40, 40)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def full_decode(path: Path) -> int:
    import cv2

    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    count = 0
    while True:
        ok, _ = cap.read()
        if not ok:
            break
        count += 1
    cap.release()
    return count


def research_pipeline(path: Path, num_frames: int = 16) -> np.ndarray:
    import cv2

    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    frames = []
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB).astype(np.float32) / 255.0)
    cap.release()
    video = np.stack(frames)
    return video[np.linspace(0, len(video) - 1, num_frames).astype(int)]


def short_files(folder: Path, count: int, repeats: int) -> None:
    """ms per file of 8-frame clips from many short 240p files (a scan's load), one decoder
    thread as in a DataLoader worker: ``auto`` (PyAV counts the packets and decodes from the
    same open file) against OpenCV (PyAV counts, then OpenCV opens the file again)."""
    import os

    from mmvgm.demo import SOURCES, synthetic_frames, write_mp4
    from mmvgm.io import read_clip

    os.environ["MMVGM_DECODE_THREADS"] = "1"
    paths = [write_mp4(folder / f"short{i:03d}.mp4", synthetic_frames(SOURCES[i % len(SOURCES)], i, 32, 240, 320))
             for i in range(count)]
    best = {"auto (PyAV, one open)": float("inf"), "OpenCV (two opens)": float("inf")}
    backends = dict(zip(best, ("auto", "opencv")))
    for _ in range(repeats):  # interleaved, best of N
        for name in best:
            start = time.perf_counter()
            for path in paths:
                read_clip(path, 8, backend=backends[name])
            best[name] = min(best[name], (time.perf_counter() - start) / count)
    auto, opencv = best.values()
    print(f"\n{count} short files (32 frames, 320x240 H.264), 8-frame clips, one decoder thread: "
          f"auto {auto * 1e3:.2f} ms/file, OpenCV {opencv * 1e3:.2f} ms/file: {opencv / auto:.2f}x")


def torchcodec_clip(path: Path, n: int, mode: str) -> np.ndarray:
    """torchcodec alone: open (its exact mode scans the packets), then the clip's frames."""
    from torchcodec.decoders import VideoDecoder

    decoder = VideoDecoder(str(path), dimension_order="NHWC", seek_mode="exact", num_ffmpeg_threads=1)
    total = decoder.metadata.num_frames_from_content
    if mode == "uniform":
        indices = np.round(np.linspace(0, total - 1, n)).astype(int).tolist()
    else:
        indices = list(range(min(n, total)))
    return decoder.get_frames_at(indices).data.numpy()


def bench_files(folder: Path) -> dict:
    """{name: path}: the files the I/O tests make, and short, long and 480p ones."""
    from mmvgm.demo import SOURCES, synthetic_frames, write_mp4
    from tests.media import FORMATS, make_frames, write_video

    frames = make_frames(20, 48, 96)  # as tests/io/conftest.py
    files = {f"test {fmt}": write_video(folder / fmt, frames, fmt) for fmt in FORMATS}
    files["short 240p (32 frames)"] = write_mp4(folder / "short.mp4", synthetic_frames(SOURCES[0], 0, 32, 240, 320))
    files["long 240p (1440 frames)"] = make_video(folder / "long.mp4", 48, width=320, height=240)
    files["480p (300 frames)"] = make_video(folder / "480p.mp4", 10)
    return files


def against_torchcodec(folder: Path, n: int, repeats: int) -> None:
    """ms per file, median of ``repeats`` interleaved runs, one decoder thread."""
    import os

    from mmvgm.io import read_clip
    from mmvgm.io.torchcodec_reader import available

    if not available():
        print("\ntorchcodec is not installed: no per-file comparison")
        return
    os.environ["MMVGM_DECODE_THREADS"] = "1"
    contenders = {"auto": lambda p, m: read_clip(p, n, m), "PyAV": lambda p, m: read_clip(p, n, m, backend="pyav"),
                  "torchcodec": lambda p, m: torchcodec_clip(p, n, m)}
    print(f"\nper file, {n}-frame clips, one decoder thread, median of {repeats}: ms (ratio to torchcodec)")
    print(f"{'file':28s} {'mode':12s} {'auto':>14s} {'PyAV':>14s} {'torchcodec':>10s}")
    worst = {"consecutive": 0.0, "uniform": 0.0}
    for name, path in bench_files(folder).items():
        for mode in ("consecutive", "uniform"):
            times = {k: [] for k in contenders}
            for fn in contenders.values():
                fn(path, mode)  # warm-up
            for _ in range(repeats):
                for key, fn in contenders.items():
                    start = time.perf_counter()
                    fn(path, mode)
                    times[key].append(time.perf_counter() - start)
            ms = {k: float(np.median(v)) * 1e3 for k, v in times.items()}
            ref = ms["torchcodec"]
            worst[mode] = max(worst[mode], ms["auto"] / ref)
            print(f"{name:28s} {mode:12s} {ms['auto']:7.2f} ({ms['auto'] / ref:4.2f}x) "
                  f"{ms['PyAV']:7.2f} ({ms['PyAV'] / ref:4.2f}x) {ref:10.2f}")
    print(f"goal auto <= 1.2x torchcodec: worst consecutive {worst['consecutive']:.2f}x, "
          f"worst uniform {worst['uniform']:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--short-files", type=int, default=100)
    args = parser.parse_args()

    from mmvgm.io import probe, read_clip

    with tempfile.TemporaryDirectory() as tmp:
        path = make_video(Path(tmp) / "bench_480p.mp4", args.seconds)
        info = probe(path)
        print(f"file: {info.width}x{info.height} {info.codec}, {info.frames} frames, "
              f"{info.duration:.1f} s, {path.stat().st_size / 1e6:.1f} MB")
        n = args.frames
        contenders = {
            "full decode (OpenCV, all frames)": lambda: full_decode(path),
            "research (all frames -> float -> sample)": lambda: research_pipeline(path, n),
            "read_clip uniform (auto)": lambda: read_clip(path, n, "uniform"),
            "read_clip consecutive (auto)": lambda: read_clip(path, n, "consecutive"),
            "read_clip uniform (PyAV)": lambda: read_clip(path, n, "uniform", backend="pyav"),
            "read_clip consecutive (PyAV)": lambda: read_clip(path, n, "consecutive", backend="pyav"),
            "read_clip uniform (OpenCV)": lambda: read_clip(path, n, "uniform", backend="opencv"),
            "read_clip consecutive (OpenCV)": lambda: read_clip(path, n, "consecutive", backend="opencv"),
        }
        late_start = max(info.frames - 32, 0)
        late = {
            "start=0": lambda: read_clip(path, n, "consecutive", start=0),
            "late": lambda: read_clip(path, n, "consecutive", start=late_start),
            "late, OpenCV (decodes from 0)":
                lambda: read_clip(path, n, "consecutive", start=late_start, backend="opencv"),
        }
        best = {name: float("inf") for name in contenders}
        best_late = {name: float("inf") for name in late}
        for fn in (*contenders.values(), *late.values()):  # warm-up: imports, page cache
            fn()
        for _ in range(args.repeats):
            for timings, group in ((best, contenders), (best_late, late)):
                for name, fn in group.items():
                    start = time.perf_counter()
                    fn()
                    timings[name] = min(timings[name], time.perf_counter() - start)

    full, research = best["full decode (OpenCV, all frames)"], \
        best["research (all frames -> float -> sample)"]
    print(f"\nbest of {args.repeats}, {n}-frame clips; rate = clips (or full decodes) per second")
    print(f"{'':44s} {'seconds':>8s} {'rate/s':>8s} {'vs full decode':>15s} {'vs research':>12s}")
    for name, seconds in best.items():
        print(f"{name:44s} {seconds:8.3f} {1 / seconds:8.2f} {full / seconds:14.2f}x "
              f"{research / seconds:11.2f}x")
    uniform = best["read_clip uniform (auto)"]
    consecutive = best["read_clip consecutive (auto)"]
    print(f"\ngoal uniform >= 0.8x full decode: {full / uniform:.2f}x   "
          f"goal >= 3x research: uniform {research / uniform:.2f}x, "
          f"consecutive {research / consecutive:.2f}x")
    first, late_s = best_late["start=0"], best_late["late"]
    print(f"late start (consecutive, start={late_start}, auto): {late_s:.3f} s vs start=0 "
          f"{first:.3f} s: {late_s / first:.2f}x the time (decoding from 0, OpenCV: "
          f"{best_late['late, OpenCV (decodes from 0)'] / first:.2f}x)")
    if args.short_files:
        with tempfile.TemporaryDirectory() as tmp:
            short_files(Path(tmp), args.short_files, max(args.repeats, 3))
    with tempfile.TemporaryDirectory() as tmp:
        against_torchcodec(Path(tmp), n, max(args.repeats, 5))


if __name__ == "__main__":
    main()
