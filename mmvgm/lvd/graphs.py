"""CUDA graphs for the guard's detector: one capture per input shape, then a replay per step.

The guard scores one small batch per denoising step. A detector at batch 1 is bound by kernel
launches, not by arithmetic (a VideoMAE-base launches a few hundred kernels per call), so
replaying a captured graph removes most of its cost per step. Captures are keyed by the input
shape, dtype and device; anything that cannot be captured falls back to eager calls for good.
"""
from __future__ import annotations

import warnings
from typing import Callable, Dict, Tuple

import torch

Key = Tuple[int, Tuple[int, ...], torch.dtype, torch.device]
WARMUP_CALLS = 2


class _Graph:
    def __init__(self, fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                 x: torch.Tensor, steps: torch.Tensor, owner: object) -> None:
        self.owner = owner  # kept alive: its id is part of the key, its weights are in the graph
        self.x = x.clone()
        self.steps = steps.clone()
        side = torch.cuda.Stream(device=x.device)
        side.wait_stream(torch.cuda.current_stream(x.device))
        with torch.cuda.stream(side):  # warm-up off the default stream, as capture requires
            for _ in range(WARMUP_CALLS):
                fn(self.x, self.steps)
        torch.cuda.current_stream(x.device).wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.out = fn(self.x, self.steps)

    def __call__(self, x: torch.Tensor, steps: torch.Tensor) -> torch.Tensor:
        self.x.copy_(x)
        self.steps.copy_(steps)
        self.graph.replay()
        return self.out.clone()


class GraphCache:
    """``cache(fn, x, steps, owner)``: ``fn(x, steps)``, replayed from a CUDA graph captured per
    shape and ``owner`` (the module whose weights ``fn`` reads: another module, another graph).

    ``fn`` must be a pure function of its two tensors (fixed weights, no host synchronisation);
    on CPU, or after a failed capture, it is simply called.
    """

    def __init__(self) -> None:
        self.graphs: Dict[Key, _Graph] = {}
        self.disabled = False

    def __call__(self, fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                 x: torch.Tensor, steps: torch.Tensor, owner: object = None) -> torch.Tensor:
        if self.disabled or x.device.type != "cuda":
            return fn(x, steps)
        key = (id(owner), tuple(x.shape), x.dtype, x.device)
        graph = self.graphs.get(key)
        if graph is None:
            try:
                graph = self.graphs[key] = _Graph(fn, x, steps, owner)
            except Exception as exc:  # noqa: BLE001 - any capture failure: eager from now on
                self.disabled = True
                self.graphs.clear()
                warnings.warn(f"LVD detector: CUDA graph capture failed ({type(exc).__name__}: "
                              f"{str(exc).splitlines()[0] if str(exc) else ''}); running eagerly", stacklevel=3)
                return fn(x, steps)
        return graph(x, steps)
