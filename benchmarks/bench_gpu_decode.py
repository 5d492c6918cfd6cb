"""torchcodec's CUDA (NVDEC) decoding against its CPU decoding, and what it changes in a score.

For H.264 files at 480p, 720p and 1080p (PyAV writes them in a temporary folder), prints, in one
run, the per-file time of a 16-frame clip, consecutive and uniform (mmvgm's sampling plans),
each file opened afresh as a scan opens it:

* on the CPU with one FFmpeg thread (what a decoding worker uses) and with FFmpeg's own choice;
* on CUDA (``VideoDecoder(device="cuda")``) with each CUDA backend the installed torchcodec
  accepts (``nvdec``/``beta`` and ``ffmpeg``), the frames synchronised before the clock stops;

as ms and as a ratio to one CPU thread, with the largest pixel difference from the CPU's frames.
Then it scores each clip both ways with one checkpoint (``--checkpoint``, else a randomly
initialised VideoMAE: it then measures how much the pixel differences move a score, not a
trained verdict) and prints the largest difference in ``p_fake`` and in the trace
probabilities, and how many verdicts changed. Goal: decoding on the GPU changes no verdict.

The end-to-end half of the GPU check, ``mmvgm scan`` files/s with VideoMAE-base in bf16, is
``bench_scan.py`` (on CUDA its base model runs at 16 x 224 under the predictor's bf16
autocast). Nothing is asserted.

    python benchmarks/bench_gpu_decode.py                 # on a CUDA machine
    python benchmarks/bench_gpu_decode.py --device cpu    # a dry run: CPU decoders only
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Dict, List

import numpy as np

if TYPE_CHECKING:
    import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

SIZES = {"480p": (854, 480), "720p": (1280, 720), "1080p": (1920, 1080)}
#: CUDA backends to try, in torchcodec's names: ``nvdec`` (0.17; called ``beta`` before) and ``ffmpeg``.
CUDA_BACKENDS = ("nvdec", "beta", "ffmpeg")

Decode = Callable[[Path, str], "torch.Tensor"]


def clip_indices(total: int, frames: int, mode: str) -> List[int]:
    """The frames ``read_clip`` would take: mmvgm's own sampling plan."""
    from mmvgm.io import parse_sampling

    indices, _ = parse_sampling(mode).plan(total, frames, 0)
    return [int(i) for i in indices]


def cpu_decoder(frames: int, threads: int) -> Decode:
    def decode(path: Path, mode: str):
        from torchcodec.decoders import VideoDecoder

        decoder = VideoDecoder(str(path), dimension_order="NHWC", seek_mode="exact", num_ffmpeg_threads=threads)
        return decoder.get_frames_at(clip_indices(decoder.metadata.num_frames_from_content, frames, mode)).data
    return decode


def cuda_decoder(frames: int, backend: str) -> Decode:
    def decode(path: Path, mode: str):
        import torch
        from torchcodec.decoders import VideoDecoder, set_cuda_backend

        with set_cuda_backend(backend):
            decoder = VideoDecoder(str(path), dimension_order="NHWC", seek_mode="exact", device="cuda")
        data = decoder.get_frames_at(clip_indices(decoder.metadata.num_frames_from_content, frames, mode)).data
        torch.cuda.synchronize()
        return data
    return decode


def decoders(device: str, frames: int, probe: Path) -> Dict[str, Decode]:
    """The contenders that run here: CPU ones always, each CUDA backend that opens ``probe``."""
    found = {"CPU, 1 thread": cpu_decoder(frames, 1), "CPU, FFmpeg's threads": cpu_decoder(frames, 0)}
    if device != "cuda":
        return found
    for backend in CUDA_BACKENDS:
        decode = cuda_decoder(frames, backend)
        try:
            decode(probe, "consecutive")
        except Exception as exc:  # noqa: BLE001 - an unknown backend name, or no NVDEC for it
            print(f"CUDA backend {backend!r}: not usable here ({str(exc).splitlines()[0][:160]})")
            continue
        found[f"CUDA, {backend}"] = decode
    return found


def median_ms(decode: Decode, path: Path, mode: str, repeats: int) -> float:
    decode(path, mode)  # warm-up: the first CUDA decoder of a process creates its context
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        decode(path, mode)
        times.append(time.perf_counter() - start)
    return float(np.median(times)) * 1e3


def make_files(folder: Path, seconds: float) -> Dict[str, Path]:
    from bench_io import make_video

    return {name: make_video(folder / f"{name}.mp4", seconds, width=w, height=h) for name, (w, h) in SIZES.items()}


def make_scorer(work: Path, args):
    """The predictor that scores both decodes: ``--checkpoint``, else a random VideoMAE."""
    from mmvgm.predict.predictor import Predictor

    device = None if args.device == "auto" else args.device
    if args.checkpoint:
        return Predictor.from_checkpoint(args.checkpoint, device=device), "checkpoint " + args.checkpoint
    from bench_scan import make_predictor

    backbone, frames, size = ("videomae", 16, 224) if args.model == "base" else ("videomae_tiny", 16, 32)
    return (make_predictor(work, backbone, frames, size, args.device),
            f"random {backbone} {frames}x{size} (pixel sensitivity, not a trained verdict)")


def clip_tensor(predictor, frames) -> "torch.Tensor":
    """Decoded (T,H,W,C) uint8 frames, on any device, as the scan's clip: the dataset's transform."""
    import torch

    video = frames.cpu() if isinstance(frames, torch.Tensor) else torch.from_numpy(frames)
    return predictor.dataset.transform.geometric(video.contiguous(), layout="channels_last")


def decision(predictor, probs: dict) -> tuple:
    """(verdict, source) of one clip's calibrated probabilities, by the rule every verdict uses."""
    p_fake, trace = probs.get("p_fake"), probs.get("trace_probs")
    verdict = predictor.scorer.verdict("clip", None if p_fake is None else p_fake[0],
                                       None if trace is None else trace[0], predictor.frames, predictor.sampling)
    return verdict.verdict, None if verdict.source is None else verdict.source.label


def score_differences(predictor, files: Dict[str, Path], contenders: Dict[str, Decode], reference: str) -> None:
    """Largest score differences between ``reference``'s clips and every other contender's."""
    for name, decode in contenders.items():
        if name == reference:
            continue
        worst_fake = worst_trace = 0.0
        flips = clips = 0
        for path in files.values():
            for mode in ("consecutive", "uniform"):
                # One clip per forward: the same pixels then give the same score bit for bit,
                # whatever a batched kernel does with a row's position.
                ref, other = (predictor.probabilities(clip_tensor(predictor, d(path, mode))[None])
                              for d in (contenders[reference], decode))
                clips += 1
                flips += int(decision(predictor, ref) != decision(predictor, other))
                if "p_fake" in ref:
                    worst_fake = max(worst_fake, float(abs(ref["p_fake"][0] - other["p_fake"][0])))
                if "trace_probs" in ref:
                    worst_trace = max(worst_trace, float(np.abs(ref["trace_probs"][0] - other["trace_probs"][0]).max()))
        print(f"{name:24s} vs {reference}: largest |p_fake| difference {worst_fake:.2e}, largest trace-probability "
              f"difference {worst_trace:.2e}, {flips} verdict(s) changed over {clips} clips")


def main() -> None:
    import torch

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto")
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each test file (30 fps)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--checkpoint", default=None, help="score with this checkpoint [default: a random VideoMAE]")
    parser.add_argument("--model", choices=("base", "tiny"), default=None,
                        help="the random VideoMAE without --checkpoint [default: base on CUDA, tiny on CPU]")
    args = parser.parse_args()
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: torch sees no CUDA device here")
    args.model = args.model or ("base" if args.device == "cuda" else "tiny")
    from mmvgm.io.torchcodec_reader import available

    if not available():
        parser.error("torchcodec is not installed (pip install torchcodec, and FFmpeg's libraries)")
    gpu = torch.cuda.get_device_name(0) if args.device == "cuda" else "no GPU used (dry run: CPU decoders only)"
    print(f"device: {gpu}; torch {torch.__version__}; {args.frames}-frame clips, median of {args.repeats}")
    with tempfile.TemporaryDirectory(prefix="bench-gpu-decode-") as tmp:
        work = Path(tmp)
        files = make_files(work, args.seconds)
        contenders = decoders(args.device, args.frames, files["480p"])
        reference = "CPU, 1 thread"
        print(f"\n{'file':6s} {'mode':12s} " + " ".join(f"{name:>26s}" for name in contenders))
        for label, path in files.items():
            for mode in ("consecutive", "uniform"):
                ref_frames = contenders[reference](path, mode).cpu()
                cells = []
                ref_ms = None
                for name, decode in contenders.items():
                    ms = median_ms(decode, path, mode, args.repeats)
                    ref_ms = ref_ms or ms
                    diff = int((decode(path, mode).cpu().int() - ref_frames.int()).abs().max())
                    cells.append(f"{ms:8.1f} ms {ref_ms / ms:5.2f}x d{diff:<4d}")
                print(f"{label:6s} {mode:12s} " + " ".join(f"{c:>26s}" for c in cells))
        print("(x: speed against one CPU thread, higher is faster; d: largest pixel difference from its frames)")
        predictor, what = make_scorer(work, args)
        print(f"\nscores, {what}, on {predictor.device}:")
        score_differences(predictor, files, contenders, reference)


if __name__ == "__main__":
    main()
