"""Training and inference throughput of every backbone, fp32 vs bf16 autocast, in one run.

    python benchmarks/bench_models.py                      # CUDA: the base configs; CPU: the tiny ones
    python benchmarks/bench_models.py --configs videomae,xclip_base_p32 --batch 4 --steps 10

For each config it builds a joint model (9 sources, as vgmshield9), times AdamW training steps
(forward + joint loss + backward + step) and no-grad inference on random clips of the config's
shape, and prints clips/s, peak GPU memory, and the bf16/fp32 speed ratio measured in this run.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, uninstalled

BASE = ["i3d_r50", "videomae", "xclip_base_p32", "xclip_large_p14", "timm"]
TINY = ["i3d_r50_tiny", "videomae_tiny", "xclip_tiny", "timm_tiny"]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _rate(step, clips: int, steps: int, device: torch.device) -> float:
    for _ in range(2):  # warm-up: kernel selection, allocator, lazy init
        step()
    _sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    return clips * steps / (time.perf_counter() - start)


def bench(name: str, device: torch.device, batch: int, steps: int, dtype) -> dict:
    from mmvgm.models import build_model

    torch.manual_seed(0)
    model = build_model({"backbone": name, "task": "joint", "num_classes": 9}).to(device)
    bb = model.backbone
    x = torch.randn(batch, bb.frames, bb.channels, bb.size, bb.size, device=device)
    y = torch.randint(0, 10, (batch,), device=device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    autocast = torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)

    def train_step():
        with autocast:
            loss = model.loss(model(x), y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def infer_step():
        with torch.no_grad(), autocast:
            model(x)

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    model.train()
    train = _rate(train_step, batch, steps, device)
    model.eval()
    infer = _rate(infer_step, batch, steps, device)
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
    return {"train": train, "infer": infer, "peak_gib": peak,
            "params_m": sum(p.numel() for p in model.parameters()) / 1e6,
            "shape": f"{bb.frames}x{bb.channels}x{bb.size}x{bb.size}"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", help="comma-separated backbone configs (default: base on CUDA, tiny on CPU)")
    parser.add_argument("--batch", type=int, default=4, help="clips per step (research default 4)")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()

    from mmvgm.runtime import autocast_dtype, pick_device

    device = pick_device(args.device)
    names = args.configs.split(",") if args.configs else (BASE if device.type == "cuda" else TINY)
    half = autocast_dtype(device)
    print(f"device {torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'}, "
          f"batch {args.batch}, {args.steps} timed steps, torch {torch.__version__}")
    header = f"{'config':<16}{'input':>14}{'params':>9}  {'precision':<9}{'train clips/s':>14}" \
             f"{'infer clips/s':>14}{'peak GiB':>10}"
    print(header)
    print("-" * len(header))
    for name in names:
        rows = {"fp32": bench(name, device, args.batch, args.steps, None)}
        if half is not None:
            rows["bf16"] = bench(name, device, args.batch, args.steps, half)
        for precision, r in rows.items():
            print(f"{name:<16}{r['shape']:>14}{r['params_m']:>8.1f}M  {precision:<9}{r['train']:>14.1f}"
                  f"{r['infer']:>14.1f}{r['peak_gib']:>10.2f}")
        if "bf16" in rows:
            print(f"{'':<16}{'bf16 / fp32 speed ratio':>37}{rows['bf16']['train'] / rows['fp32']['train']:>14.2f}"
                  f"{rows['bf16']['infer'] / rows['fp32']['infer']:>14.2f}")
        if device.type == "cuda":
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
