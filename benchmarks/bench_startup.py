"""Start-up: ``mmvgm trace one.mp4`` wall time as a ratio to ``python -c "import torch"``, and
``mmvgm --help``.

Prints, measured in one run (each command run ``--runs`` times in alternation, medians):

* ``python -c "import torch"``: the floor every verb that scores pays;
* ``mmvgm trace one.mp4 --checkpoint <tiny>`` (a tiny untrained videomae_tiny joint checkpoint
  and a short synthetic H.264 video, both made here) as a ratio to it. Goal: <= 1.5;
* ``mmvgm --help`` in seconds. Goal: < 0.2 s;
* ``mmvgm serve --checkpoint <tiny>`` until ``/readyz`` first answers 200 (model loaded,
  decoders imported), as a ratio to ``import torch``: the service's start-up, which the same
  savings serve;
* where the rest goes: the imports ``trace`` needs, one more per fresh process (``-X
  importtime`` attributes a shared import to whichever module comes first, so it misleads
  here), with what transformers' modeling would add (training imports it; scoring a VideoMAE
  checkpoint does not), and, in-process, loading the checkpoint and building VideoMAE-base
  for a checkpoint to fill against building it for training.

    python benchmarks/bench_startup.py
    python benchmarks/bench_startup.py --runs 9
"""
from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Dict, List

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def wall(cmd: List[str], env: Dict[str, str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({done.returncode}): {done.stderr.strip()[-500:]}")
    return seconds


IMPORT_STEPS = {  # each a fresh process: what one more import costs on top of the line before
    "torch": "import torch",
    "+ mmvgm's trace path": "import torch, av, mmvgm.cli.trace, mmvgm.predict.predictor, mmvgm.predict.explain, "
                            "mmvgm.checkpoint.files, mmvgm.models.videomae",
    # what training imports and scoring a VideoMAE checkpoint no longer does
    "+ transformers' modeling": "import torch, av, mmvgm.cli.trace, mmvgm.predict.predictor, mmvgm.predict.explain, "
                                "mmvgm.checkpoint.files, mmvgm.models.videomae, "
                                "transformers.models.videomae.modeling_videomae",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def serve_ready(checkpoint: Path, state_dir: Path, env: Dict[str, str], timeout: float = 120.0) -> float:
    """Seconds from starting ``mmvgm serve`` until its ``/readyz`` answers 200."""
    port = free_port()
    cmd = [sys.executable, "-m", "mmvgm", "serve", "--checkpoint", str(checkpoint), "--port", str(port),
           "--state-dir", str(state_dir)]
    start = time.perf_counter()
    server = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        while time.perf_counter() - start < timeout:
            if server.poll() is not None:
                raise SystemExit(f"mmvgm serve exited ({server.returncode}): {server.stderr.read().decode()[-500:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as reply:
                    if reply.status == 200:
                        return time.perf_counter() - start
            except (urllib.error.URLError, ConnectionError):
                pass  # not listening yet, or 503 while the model loads
            time.sleep(0.01)
        raise SystemExit(f"mmvgm serve was not ready within {timeout:.0f} s")
    finally:
        server.terminate()
        server.wait(timeout=30)


def model_costs(checkpoint: Path) -> Dict[str, float]:
    """Seconds to load the tiny checkpoint, and to build VideoMAE-base for training (transformers'
    modules, random initialisation) and for a checkpoint to fill (``scoring=True``)."""
    from mmvgm.checkpoint.files import load_checkpoint
    from mmvgm.models import build_backbone

    costs = {}
    for name, build in (("load", lambda: load_checkpoint(checkpoint)),
                        ("base scoring", lambda: build_backbone("videomae", scoring=True)),
                        ("base training", lambda: build_backbone("videomae"))):
        start = time.perf_counter()
        build()
        costs[name] = time.perf_counter() - start
    return costs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="runs of each command (medians) [5]")
    args = parser.parse_args()
    from tests.inference_helpers import make_checkpoint, make_videos

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = make_checkpoint(Path(tmp) / "ck")
        video = make_videos(Path(tmp) / "v", 1, frames=16, size=(64, 64))[0]
        commands = {
            "import torch": [sys.executable, "-c", "import torch"],
            "mmvgm trace": [sys.executable, "-m", "mmvgm", "trace", str(video), "--checkpoint", str(checkpoint),
                            "--json"],
            "mmvgm --help": [sys.executable, "-m", "mmvgm", "--help"],
        }
        state = Path(tmp) / "state"
        times: Dict[str, List[float]] = {name: [] for name in [*commands, "mmvgm serve"]}
        for name, cmd in commands.items():
            wall(cmd, env)  # warm the page cache
        serve_ready(checkpoint, state, env)
        for _ in range(args.runs):
            for name, cmd in commands.items():
                times[name].append(wall(cmd, env))
            times["mmvgm serve"].append(serve_ready(checkpoint, state, env))
        med = {name: statistics.median(values) for name, values in times.items()}
        print(f"machine: {os.cpu_count()} CPU cores; {args.runs} runs each, in alternation; medians")
        print(f"  python -c 'import torch'   {med['import torch']:.2f} s  "
              f"({', '.join(f'{t:.2f}' for t in times['import torch'])})")
        print(f"  mmvgm trace one.mp4         {med['mmvgm trace']:.2f} s  ratio {med['mmvgm trace'] / med['import torch']:.2f}"
              f" (goal <= 1.5; {', '.join(f'{t:.2f}' for t in times['mmvgm trace'])})")
        print(f"  mmvgm --help                {med['mmvgm --help']:.3f} s (goal < 0.2 s)")
        print(f"  mmvgm serve, until ready    {med['mmvgm serve']:.2f} s  ratio "
              f"{med['mmvgm serve'] / med['import torch']:.2f} ({', '.join(f'{t:.2f}' for t in times['mmvgm serve'])})")
        print("  imports, each line a fresh process with one more import (medians):")
        for name, code in IMPORT_STEPS.items():
            step = statistics.median(wall([sys.executable, "-c", code], env) for _ in range(args.runs))
            print(f"    {name:<26} {step:.2f} s")
        costs = model_costs(checkpoint)
        print(f"  in-process: load_checkpoint (tiny) {costs['load']:.3f} s; VideoMAE-base built to be filled "
              f"{costs['base scoring']:.2f} s, built for training (random initialisation) "
              f"{costs['base training']:.2f} s")


if __name__ == "__main__":
    main()
