"""Decoding for ``Predictor.stream``: DataLoader workers decode clips while the model scores.

A :class:`DecodePool` keeps its workers alive from one stream to the next
(``persistent_workers``). Each stream hands the pool its requests through a batch sampler
that is refilled per stream, so a predictor that scores many lists, as a service does,
forks its workers once. A ``Predictor`` loaded with ``workers=N`` starts its pool before
its model moves to the GPU, where a fork is cheap: forking a process that holds a CUDA
context and a model measured 0.5 to 0.9 s for 14 workers on an H100 machine.

Requests are ``(path, frames, sampling)``. A bad file becomes an item with ``error`` set,
never an exception, so one bad file cannot stop a scan.
"""
from __future__ import annotations

from contextlib import nullcontext
from typing import Any, Iterator, List, Optional, Sequence, Tuple

import torch

from mmvgm.errors import MMVGMError

Request = Tuple[str, int, str]


def _worker_init(_: int) -> None:
    # DataLoader workers decode; one torch thread each keeps them from fighting the model for
    # cores. (Not cv2.setNumThreads: in a forked worker it tears down the parent's OpenCV
    # thread pool and can deadlock.)
    torch.set_num_threads(1)


class ClipDataset(torch.utils.data.Dataset):
    """``(path, frames, sampling)`` -> ``{"path", "pixels" (T,3,S,S) uint8 or None, "padded",
    "error"}`` (never raises). Indexed by requests, not integers: see ``DecodePool``."""

    def __init__(self, geometric) -> None:
        self.geometric = geometric

    def __getitem__(self, request: Request) -> dict:
        path, frames, sampling = request
        try:
            from mmvgm.io import read_clip

            clip = read_clip(path, num_frames=frames, sampling=sampling)
            pixels = self.geometric(clip)
            return {"path": path, "pixels": pixels, "padded": int(getattr(clip, "padded", 0)),
                    "error": None}
        except MMVGMError as exc:
            return {"path": path, "pixels": None, "padded": 0, "error": exc.message}
        except Exception as exc:  # noqa: BLE001 - one bad file must not stop a scan
            return {"path": path, "pixels": None, "padded": 0,
                    "error": f"{type(exc).__name__}: {exc}".splitlines()[0]}


def collate_items(items: List[dict]) -> dict:
    good = [it for it in items if it["pixels"] is not None]
    return {
        "items": [{k: v for k, v in it.items() if k != "pixels"} for it in items],
        "pixels": torch.stack([it["pixels"] for it in good]) if good else None,
    }


def worker_chunk(batch_size: int, workers: int) -> int:
    """Files per DataLoader item: the largest divisor of ``batch_size`` that still gives every
    worker a share of one batch. A worker collating a whole batch alone would decode it file
    after file while the other workers idle (slow first batch, and short scans never spread)."""
    if workers <= 1:
        return batch_size
    cap = max(1, -(-batch_size // workers))
    return max(d for d in range(1, cap + 1) if batch_size % d == 0)


class _Chunks(torch.utils.data.Sampler):
    """The batch sampler of a pool: the current stream's chunks of requests."""

    def __init__(self) -> None:
        self.chunks: List[List[Request]] = []

    def __iter__(self) -> Iterator[List[Request]]:
        return iter(self.chunks)

    def __len__(self) -> int:
        return len(self.chunks)


class DecodePool:
    """``workers`` DataLoader processes decoding ``(path, frames, sampling)`` requests.

    ``persistent=True`` keeps the workers between calls of :meth:`decode`; one pass at a time
    (``busy`` says whether one is under way; its caller calls :meth:`done` after it).
    ``workers=0`` decodes in this process.
    """

    def __init__(self, geometric, workers: int, device: torch.device, persistent: bool = True) -> None:
        from mmvgm.runtime import prepare_decoding_workers

        self.workers = workers
        self.device = device
        self.busy = False
        self._close_when_done = False
        self._chunks = _Chunks()
        self._loader = torch.utils.data.DataLoader(
            ClipDataset(geometric), batch_sampler=self._chunks, num_workers=workers,
            collate_fn=collate_items, worker_init_fn=_worker_init if workers else None,
            pin_memory=device.type == "cuda", prefetch_factor=2 if workers else None,
            persistent_workers=persistent and workers > 0,
            multiprocessing_context=prepare_decoding_workers() if workers else None)

    def _pinning_device(self):
        # The pin-memory thread pins for the CUDA device current when the first iterator starts:
        # ours must be current (cuda:K under torchrun), or pinning would open a context on
        # another GPU. Making it current initialises CUDA, so it is skipped only where nothing
        # can differ: CUDA not started yet (it will start on GPU 0) and the device is cuda:0.
        # Then the workers fork before CUDA starts.
        if self.device.type != "cuda":
            return nullcontext()
        if (self.device.index or 0) == 0 and not torch.cuda.is_initialized():
            return nullcontext()
        return torch.cuda.device(self.device)

    def start(self) -> None:
        """Start the workers now (an empty pass), instead of on the first ``decode``."""
        self._chunks.chunks = []
        with self._pinning_device():
            for _ in self._loader:
                pass
        self.done()

    def decode(self, requests: Sequence[Request], chunk: int) -> Iterator[dict]:
        """Collated chunks (``collate_items``) of ``chunk`` requests each, in order.

        A pass left unfinished is drained by the next one (torch's persistent workers finish
        the outstanding chunks before the next pass starts). Workers that died while idle
        (killed, out of memory) are replaced first."""
        self._chunks.chunks = [list(requests[i:i + chunk]) for i in range(0, len(requests), chunk)]
        idle = self._idle_iterator()
        if idle is not None:
            if all(w.is_alive() for w in idle._workers):
                self._watch(idle, True)
            else:
                self._shutdown()  # iter() below starts fresh workers
                idle = None
        with self._pinning_device():
            try:
                return iter(self._loader)
            except RuntimeError:
                # A worker died as the pass started (a killed process is reported only once
                # all its threads have ended): nothing of this pass was handed out yet.
                if idle is None:
                    raise
                self._shutdown()
                return iter(self._loader)

    def _idle_iterator(self) -> Optional[Any]:
        """The persistent workers' iterator (between passes, or the one under way), if any."""
        iterator = getattr(self._loader, "_iterator", None)
        return iterator if hasattr(iterator, "_workers") else None

    @staticmethod
    def _watch(iterator: Any, on: bool) -> None:
        # torch's SIGCHLD handler raises in the main thread, wherever it is, when a registered
        # worker dies. Idle workers are not registered: one that dies between passes (killed,
        # out of memory) must not raise in the caller's unrelated code; ``decode`` replaces it.
        from torch.utils.data._utils import signal_handling

        if on and not iterator._worker_pids_set:
            signal_handling._set_worker_pids(id(iterator), tuple(w.pid for w in iterator._workers))
            iterator._worker_pids_set = True
        elif not on and iterator._worker_pids_set:
            signal_handling._remove_worker_pids(id(iterator))
            iterator._worker_pids_set = False

    @property
    def worker_pids(self) -> List[int]:
        """PIDs of the running workers (empty before the first pass or without persistence)."""
        iterator = self._idle_iterator()
        return [] if iterator is None else [w.pid for w in iterator._workers]

    def done(self) -> None:
        """The current pass is over (finished or abandoned); a ``close()`` asked for during it
        happens now."""
        self.busy = False
        if self._close_when_done:
            self.close()
            return
        idle = self._idle_iterator()
        if idle is not None:
            self._watch(idle, False)

    def close(self) -> None:
        """Stop the workers (they also stop when the pool is garbage collected). During a pass
        the workers stop when it is ``done()``: stopping them under it would end it silently,
        short of its files."""
        if self.busy:
            self._close_when_done = True
            return
        self._shutdown()

    def _shutdown(self) -> None:
        iterator = self._idle_iterator()
        if iterator is not None:
            iterator._shutdown_workers()
        self._loader._iterator = None


def grouped(chunks: Iterator[dict], batch_size: int, device: torch.device
            ) -> Iterator[Tuple[List[dict], Optional[torch.Tensor]]]:
    """Collated chunks -> (items, pixels on ``device`` or None) of ``batch_size`` items; each
    chunk is copied to the device as it arrives (pinned, non-blocking) and joined there."""
    items: List[dict] = []
    parts: List[torch.Tensor] = []
    for chunk in chunks:
        items.extend(chunk["items"])
        if chunk["pixels"] is not None:
            parts.append(chunk["pixels"].to(device, non_blocking=True))
        if len(items) >= batch_size:
            yield items, _joined(parts)
            items, parts = [], []
    if items:
        yield items, _joined(parts)


def _joined(parts: List[torch.Tensor]) -> Optional[torch.Tensor]:
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else torch.cat(parts)
