"""Predictor: a checkpoint turned into verdicts for one video, a list, or a stream.

Every score goes through the one path (``io.read_clip`` -> ``VideoTransform`` -> model) and
``mmvgm.predict.scoring``: the precision ``eval`` used, temperature-scaled probabilities, the
fitted detection threshold, and the open-set threshold under which the source is reported as
``unknown``. Results are :class:`~mmvgm.predict.verdict.Verdict` objects; their ``to_json()``
is one line of ``mmvgm trace --json`` and of ``mmvgm scan``.
"""
from __future__ import annotations

import os
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch

from mmvgm.checkpoint.meta import CheckpointMeta
from mmvgm.errors import CheckpointError, InputError, PathLike
from mmvgm.data.dataset import ClipItem, collate_items
from mmvgm.predict.pool import DecodePool, grouped, worker_chunk
from mmvgm.predict.scoring import Scorer
from mmvgm.predict.verdict import NOT_ASSESSED, Verdict  # noqa: F401  (NOT_ASSESSED: public name)

#: Decoded (uint8 RGB) frames a windowed prediction holds at once before transforming them.
_WINDOW_GROUP_BYTES = 1 << 30
CHECKPOINT_ENV = "MMVGM_CHECKPOINT"
CHECKPOINT_HINT = ("no checkpoint given: pass --checkpoint DIR or set MMVGM_CHECKPOINT; "
                   "`mmvgm demo` makes a demo checkpoint on synthetic media, "
                   "`mmvgm train --backbone videomae --task joint --data DATA/` trains a real one")


def resolve_checkpoint(checkpoint: Optional[PathLike]) -> Path:
    """``checkpoint`` or ``$MMVGM_CHECKPOINT`` (a directory or a hub id, fetched into the HF
    cache); neither -> a CheckpointError saying how to get one."""
    from mmvgm.checkpoint.files import locate_checkpoint

    value = checkpoint or os.environ.get(CHECKPOINT_ENV)
    if not value:
        raise CheckpointError(CHECKPOINT_HINT)
    path = locate_checkpoint(value)
    if not path.is_dir():
        raise CheckpointError("checkpoint directory not found (`mmvgm demo` makes a demo checkpoint; "
                              "`mmvgm train` trains one)", path)
    return path


@dataclass
class DecodedBatch:
    """Clips decoded by :meth:`Predictor.decode_batch`, waiting for :meth:`Predictor.score_batch`."""

    items: List[ClipItem]
    pixels: Optional[torch.Tensor]  # the good items' clips, on the predictor's device
    frames: int
    sampling: str


class Predictor:
    """Load once, predict many. ``Predictor.from_checkpoint(dir).predict("clip.mp4")``."""

    def __init__(self, model: torch.nn.Module, meta: CheckpointMeta, device: Optional[str] = None,
                 workers: Optional[int] = None, precision: str = "auto", threads: Optional[int] = None,
                 max_pixels: Optional[int] = None, max_frames: Optional[int] = None,
                 expected_files: Optional[int] = None) -> None:
        """``workers``: start that many decoding workers for ``stream`` now, before the model
        moves to the device (see ``mmvgm.predict.pool``); otherwise they start on the first
        stream. ``expected_files``: how many files the workers will decode (a scan's count); too
        few per worker to earn torchcodec's import back and they read with PyAV
        (``runtime.workers.torchcodec_pays``) [default: None, long-lived work of unknown length:
        torchcodec where it runs]. ``precision``: auto | fp32 | bf16 | fp16 (``runtime.device.precision_dtype``).
        ``threads``: fix the compute threads of ``predict`` and ``stream`` (``--threads``; by
        default ``runtime.threads`` chooses). ``max_pixels`` / ``max_frames``: the budgets every
        read applies, here and in the decoding workers [default: ``mmvgm.io.limits``']."""
        from mmvgm.data.dataset import VideoDataset
        from mmvgm.data.transforms import VideoTransform
        from mmvgm.runtime import pick_device, precision_dtype

        if not isinstance(meta, CheckpointMeta):
            meta = CheckpointMeta.from_dict(meta)
        self.meta = meta
        self.task = meta.task
        label_set = meta.label_set
        self.labels = list(label_set.names)
        self.display = dict(zip(label_set.names, label_set.display))
        self.source_labels = meta.source_labels
        self.calibration = meta.calibration
        self.frames = meta.frames
        self.sampling = meta.sampling
        self.transform = VideoTransform.from_config(meta.preprocess)
        self.limits = {"max_pixels": max_pixels, "max_frames": max_frames}
        self.dataset = VideoDataset(num_frames=self.frames, sampling=self.sampling, transform=self.transform,
                                    **self.limits)
        if workers is not None and workers < 0:
            raise InputError(f"workers must be >= 0 (got {workers})")
        self.device = pick_device(device)
        self.precision = precision
        self.threads = threads
        self.expected_files = expected_files
        dtype = precision_dtype(precision, self.device, meta.precision)
        self._pool: Optional[DecodePool] = None
        self._pool_lock = threading.Lock()
        if workers:
            self._decode_pool(workers).start()
        self.model = model.to(self.device).eval()
        self.scorer = Scorer(self.model, meta, self.transform, self.device, dtype)
        self.path: Optional[Path] = None

    @classmethod
    def from_checkpoint(cls, checkpoint: Optional[PathLike] = None, device: Optional[str] = None,
                        workers: Optional[int] = None, precision: str = "auto",
                        threads: Optional[int] = None, expected_files: Optional[int] = None,
                        **limits: Optional[int]) -> "Predictor":
        """Load ``checkpoint`` (or ``$MMVGM_CHECKPOINT``) with ``checkpoint.files.load_checkpoint``;
        ``workers``: start that many decoding workers for ``stream`` before the model moves to
        the device (a scan about to run passes its ``--workers``, and its file count as
        ``expected_files``, see ``__init__``); ``limits``: ``max_pixels``, ``max_frames``."""
        from mmvgm.checkpoint.files import load_checkpoint
        from mmvgm.runtime import prepare_decoding_workers
        from mmvgm.runtime.workers import torchcodec_pays

        path = resolve_checkpoint(checkpoint)
        if workers:  # a chosen fork server imports while the checkpoint loads; a lone reader needs none of it
            prepare_decoding_workers(torchcodec=torchcodec_pays(expected_files, workers))
        model, meta = load_checkpoint(path)
        predictor = cls(model, meta, device=device, workers=workers, precision=precision, threads=threads,
                        expected_files=expected_files, **limits)
        predictor.path = path
        return predictor

    @classmethod
    def from_pretrained(cls, id_or_dir: PathLike, *, revision: Optional[str] = None,
                        cache_dir: Optional[PathLike] = None, **options: Any) -> "Predictor":
        """Load a checkpoint folder or hub repo (``org/name``, ``hf://org/name``); ``revision``: a
        branch, tag or commit of the repo; ``cache_dir``: instead of the HF cache. ``options`` as
        ``from_checkpoint``. Nothing is fetched for a folder that exists."""
        from mmvgm.checkpoint.files import locate_checkpoint
        from mmvgm.checkpoint.hub import with_revision

        spec = with_revision(id_or_dir, revision) if revision else id_or_dir
        return cls.from_checkpoint(locate_checkpoint(spec, cache_dir=cache_dir), **options)

    def save_pretrained(self, directory: PathLike, metrics: Optional[Any] = None, *,
                        name: Optional[str] = None, license: Optional[str] = None) -> Path:
        """Write this predictor's checkpoint as a hub-ready folder (``checkpoint.files.save_pretrained``):
        ``metrics`` is eval's ``metrics.json`` (a path or dict; default: the one beside the loaded
        checkpoint, if any); ``name`` (``org/name``) and ``license`` go into the model card."""
        from mmvgm.checkpoint.files import read_metrics, save_pretrained

        metrics = read_metrics(metrics if metrics is not None else self.path)
        return save_pretrained(directory, self.model, self.meta, metrics, name=name, license=license)

    def close(self) -> None:
        """Stop the decoding workers kept for ``stream`` (also done when the predictor is freed);
        a stream under way keeps them until it ends."""
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    def __enter__(self) -> "Predictor":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ------------------------------------------------------------------ scoring
    def logits(self, pixels_uint8: torch.Tensor) -> Dict[str, np.ndarray]:
        """Raw head logits for a uint8 batch (B,T,3,S,S) after the geometric transform."""
        return self.scorer.logits(pixels_uint8)

    def submit(self, pixels_uint8: torch.Tensor) -> Callable[[], Dict[str, np.ndarray]]:
        """Start scoring a batch; returns a function that waits for its raw logits."""
        return self.scorer.submit(pixels_uint8)

    def probabilities(self, pixels_uint8: torch.Tensor) -> Dict[str, np.ndarray]:
        """Calibrated ``p_fake`` (B,) and/or ``trace_probs`` (B, N)."""
        return self.scorer.probabilities(self.logits(pixels_uint8))

    def check_frames(self, frames: Optional[int]) -> int:
        """The clip length to use; refuses one the model cannot take (fixed position embeddings)."""
        frames = self.frames if frames is None else int(frames)
        if frames < 1:
            raise InputError(f"--frames must be >= 1 (got {frames})")
        backbone = getattr(self.model, "backbone", None)
        if frames != self.frames and getattr(backbone, "fixed_frames", False):
            raise InputError(f"this checkpoint's model takes exactly {self.frames} frames per clip "
                             f"(got --frames {frames})")
        return frames

    # ------------------------------------------------------------------ clips
    def load_clip(self, path: PathLike, frames: Optional[int] = None, sampling: Optional[str] = None,
                  start: int = 0) -> Tuple[torch.Tensor, Any]:
        """(uint8 (T,3,S,S) after the geometric transform, the decoded ``Clip``), through the
        dataset that training, eval and the decoding workers use. Raises on bad input."""
        return self.dataset.clip(str(path), num_frames=self.frames if frames is None else frames,
                                 sampling=sampling or self.sampling, start=start)

    def predict(self, path: PathLike, frames: Optional[int] = None, sampling: Optional[str] = None,
                windows: int = 1) -> Verdict:
        """Score one video; raises ``InputError``/``DecodeError`` for a bad file.

        ``windows > 1``: that many clips spread evenly over the video (consecutive frames, or
        ``stride:K`` when that is the sampling; ``uniform`` becomes consecutive per window).
        The top-level scores are the mean of the windows' calibrated probabilities; each
        window's own scores are under ``"windows"``.
        """
        with self._thread_loop(0):
            return self._predict(path, frames, sampling, windows)

    def _predict(self, path: PathLike, frames: Optional[int], sampling: Optional[str], windows: int) -> Verdict:
        frames = self.check_frames(frames)
        sampling = sampling or self.sampling
        if windows < 1:
            raise InputError(f"--windows must be >= 1 (got {windows})")
        if windows == 1:
            pixels, clip = self.load_clip(path, frames, sampling)
            return self.scorer.verdicts([str(path)], self.logits(pixels[None]),
                                        [int(getattr(clip, "padded", 0))], frames, sampling)[0]
        return self._predict_windows(str(path), frames, sampling, windows)

    def _predict_windows(self, path: str, frames: int, sampling: str, windows: int) -> Verdict:
        from mmvgm.io import parse_sampling, probe, read_clips

        spec = parse_sampling(sampling)  # a bad spec: InputError, not a ValueError from int()
        window_sampling = sampling if spec.kind == "stride" else "consecutive"
        step = spec.stride if spec.kind == "stride" else 1
        info = probe(path, **self.limits)
        total = int(info.frames)
        span = (frames - 1) * step + 1
        last = max(total - span, 0)
        # At most one window per start frame: more would score the same clips again (the CLI
        # says how many fit).
        starts = sorted({int(round(s)) for s in np.linspace(0, last, min(windows, last + 1))})
        clips, padded, indices = [], [], []
        # One decoding pass per group of windows (same frames as load_clip per window); groups
        # bound the decoded frames held at once.
        group = max(1, _WINDOW_GROUP_BYTES // max(frames * info.width * info.height * 3, 1))
        for first in range(0, len(starts), group):
            for clip in read_clips(path, frames, starts[first:first + group], window_sampling, **self.limits):
                clips.append(self.transform.geometric(clip))
                padded.append(int(getattr(clip, "padded", 0)))
                idx = getattr(clip, "indices", None)
                indices.append([int(i) for i in idx] if idx is not None else None)
        probs = self.probabilities(torch.stack(clips))
        p_fake, trace = probs.get("p_fake"), probs.get("trace_probs")
        per_window: List[Verdict] = []
        for i, start in enumerate(starts):
            window = self.scorer.verdict(path, None if p_fake is None else p_fake[i],
                                         None if trace is None else trace[i], frames, window_sampling, padded[i])
            window.start = start
            window.end = indices[i][-1] if indices[i] else None
            per_window.append(window)
        mean = self.scorer.verdict(path, None if p_fake is None else float(p_fake.mean()),
                                   None if trace is None else trace.mean(axis=0), frames, window_sampling,
                                   max(padded))
        mean.aggregation = "mean"
        mean.windows = per_window
        return mean

    def predict_batch(self, paths: Sequence[PathLike], frames: Optional[int] = None,
                      sampling: Optional[str] = None, batch_size: int = 8,
                      workers: Optional[int] = None) -> List[Verdict]:
        """Score many videos; a bad file gives a ``Verdict`` with ``error`` instead of raising.
        ``workers``: decoding processes; by default the predictor's running ones, else none."""
        if workers is None:
            workers = self._pool.workers if self._pool is not None else 0
        out: List[Verdict] = []
        for batch in self.stream([str(p) for p in paths], batch_size=batch_size, workers=workers,
                                 frames=frames, sampling=sampling):
            out.extend(batch)
        return out

    def stream(self, paths: Sequence[str], batch_size: int = 8, workers: int = 2,
               frames: Optional[int] = None, sampling: Optional[str] = None,
               threads: Optional[int] = None) -> Iterator[List[Verdict]]:
        """Yield one list of records per batch, in input order; decoding runs in ``workers``
        DataLoader processes, overlapped with inference (``workers=0`` decodes in-process).
        The workers stay up for this predictor's next stream, until ``close()``. ``threads``:
        the compute threads [default: the predictor's ``threads``, else ``runtime.threads``'s choice]."""
        if batch_size < 1:
            raise InputError(f"--batch-size must be >= 1 (got {batch_size})")
        if workers < 0:
            raise InputError(f"--workers must be >= 0 (got {workers})")
        frames = self.check_frames(frames)
        sampling = sampling or self.sampling
        if not paths:
            return
        with self._taken_pool(workers) as pool:
            chunks = pool.decode([(path, frames, sampling) for path in paths], worker_chunk(batch_size, workers))
            yield from self._scored_batches(grouped(chunks, batch_size, self.device), workers, frames, sampling,
                                            threads)

    def decode_batch(self, paths: Sequence[PathLike], frames: Optional[int] = None,
                     sampling: Optional[str] = None) -> "DecodedBatch":
        """Decode ``paths`` as one batch, split evenly over the predictor's decoding workers
        (in this thread without them), for :meth:`score_batch`: a service decodes its next
        batch while the model scores this one. The same verdicts as ``predict_batch``."""
        frames = self.check_frames(frames)
        sampling = sampling or self.sampling
        requests = [(str(p), frames, sampling) for p in paths]
        if not requests:
            return DecodedBatch([], None, frames, sampling)
        with self._taken_pool(self._pool.workers if self._pool is not None else 0) as pool:
            chunks = pool.decode(requests, -(-len(requests) // max(1, pool.workers)))
            items, pixels = next(grouped(chunks, len(requests), self.device))
        return DecodedBatch(items, pixels, frames, sampling)

    def score_batch(self, batch: "DecodedBatch") -> List[Verdict]:
        """The verdicts of a :meth:`decode_batch` result, in its order (errors as they are)."""
        if not batch.items:
            return []
        workers = self._pool.workers if self._pool is not None else 0
        with self._thread_loop(workers):
            submitted = self.submit(batch.pixels) if batch.pixels is not None else None
            return self._batch_records(batch.items, submitted, batch.frames, batch.sampling)

    @contextmanager
    def _taken_pool(self, workers: int) -> Iterator[DecodePool]:
        """This predictor's pool for ``workers``, held for one pass (``_decode_pool``)."""
        with self._pool_lock:  # two threads must not both take the free pool
            pool = self._decode_pool(workers)
            pool.busy = True
        try:
            yield pool
        except Exception:
            if pool is self._pool:  # a worker died or the pool broke: the next pass starts afresh
                self.close()
            raise
        finally:
            pool.done()

    def _decode_pool(self, workers: int) -> DecodePool:
        """This predictor's decoding pool for ``workers`` (made or remade as needed), or a
        one-off pool while it is busy with another stream."""
        from mmvgm.runtime.workers import torchcodec_pays

        torchcodec = torchcodec_pays(self.expected_files, workers)
        if self._pool is not None and self._pool.busy:
            return DecodePool(self.dataset.__getitem__, collate_items, workers, self.device, persistent=False,
                              torchcodec=torchcodec)
        if self._pool is None or self._pool.workers != workers:
            self.close()
            self._pool = DecodePool(self.dataset.__getitem__, collate_items, workers, self.device,
                                    torchcodec=torchcodec)
        return self._pool

    def _thread_loop(self, workers: int, threads: Optional[int] = None) -> Any:
        """The thread policy's context for a loop fed by ``workers`` decoding processes."""
        from mmvgm.runtime.threads import resolve_threads

        return resolve_threads(self.device, workers, self.threads if threads is None else threads).loop()

    def _scored_batches(self, groups: Iterator[Tuple[List[dict], Optional[torch.Tensor]]], workers: int,
                        frames: int, sampling: str, threads: Optional[int] = None) -> Iterator[List[Verdict]]:
        with self._thread_loop(workers, threads) as load:
            pending = None  # one batch in flight: the next is submitted before this one is collected
            while True:
                asked = time.perf_counter()
                group = next(groups, None)
                got = time.perf_counter()
                if group is None:
                    break
                items, pixels = group
                submitted = self.submit(pixels) if pixels is not None else None
                load.record(waited=got - asked, computed=time.perf_counter() - got)
                if pending is not None:
                    yield self._batch_records(*pending, frames, sampling)
                pending = (items, submitted)
            if pending is not None:
                yield self._batch_records(*pending, frames, sampling)

    def _batch_records(self, items: List[ClipItem], submitted: Optional[Callable[[], Dict[str, np.ndarray]]],
                       frames: int, sampling: str) -> List[Verdict]:
        """Records in ``items`` order: scored ones from ``submitted``'s logits, errors as they are."""
        good = [it for it in items if it.ok]
        scored: Dict[int, Verdict] = {}
        if good:
            records = self.scorer.verdicts([it.path for it in good], submitted(),
                                           [it.padded for it in good], frames, sampling)
            scored = {id(it): rec for it, rec in zip(good, records)}
        return [scored[id(it)] if it.ok else Verdict.failed(it.path, it.error)
                for it in items]

    def describe(self) -> Dict[str, Any]:
        from mmvgm.runtime import precision_name

        cal = self.calibration
        return {"checkpoint": None if self.path is None else str(self.path), "task": self.task,
                "labels": self.labels, "frames": self.frames, "sampling": self.sampling,
                "precision": precision_name(self.scorer.dtype), "precision_requested": self.precision,
                "threshold": cal.threshold, "temperature": cal.temperature,
                "open_set_threshold": cal.open_set_threshold, "device": str(self.device)}
