"""Predictor: a checkpoint turned into verdicts for one video, a list, or a stream.

Every score goes through the one path (``io.read_clip`` -> ``VideoTransform`` -> model) and
the checkpoint's calibration (``engine.calibration.calibrate_outputs``): temperature-scaled
probabilities, the fitted detection threshold, and the open-set threshold under which the
source is reported as ``"unknown"``.

A result record (also one line of ``mmvgm trace --json`` and of ``mmvgm scan``)::

    {"path": ..., "fake_probability": 0.93,            # detect / joint checkpoints only
     "verdict": "fake",                                # real | fake | not-assessed (see below)
     "source": {"label": "lavie", "probability": 0.81} or "unknown",   # trace / joint only
     "sources": {"lavie": 0.81, ...},                  # every source, most likely first
     "frames": 16, "sampling": "consecutive", "padded": 0}

A trace-only checkpoint trained without a ``real`` class assumes its input is generated and
cannot judge real vs. fake: its verdict is ``"not-assessed"``. For joint checkpoints the
source ranking answers "if generated, by what?" and is reported whatever the verdict.
"""
from __future__ import annotations

import threading
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch

from mmvgm.predict.pool import DecodePool, grouped, worker_chunk
from mmvgm.errors import CheckpointError, InputError, PathLike

NOT_ASSESSED = "not-assessed"
#: Decoded (uint8 RGB) frames a windowed prediction holds at once before transforming them.
_WINDOW_GROUP_BYTES = 1 << 30
CHECKPOINT_ENV = "MMVGM_CHECKPOINT"
CHECKPOINT_HINT = ("no checkpoint given: pass --checkpoint DIR or set MMVGM_CHECKPOINT; "
                   "`mmvgm demo` makes a demo checkpoint on synthetic media, "
                   "`mmvgm train --backbone videomae --task joint --data DATA/` trains a real one")


def resolve_checkpoint(checkpoint: Optional[PathLike]) -> Path:
    """``checkpoint`` or ``$MMVGM_CHECKPOINT``; neither -> a CheckpointError saying how to get one."""
    import os

    value = checkpoint or os.environ.get(CHECKPOINT_ENV)
    if not value:
        raise CheckpointError(CHECKPOINT_HINT)
    path = Path(value).expanduser()
    if not path.is_dir():
        raise CheckpointError("checkpoint directory not found (`mmvgm demo` makes a demo checkpoint; "
                              "`mmvgm train` trains one)", path)
    return path


def _label_names(labels: Any) -> Tuple[List[str], Dict[str, str]]:
    """Checkpoint ``labels`` -> (names, display): the label-set mapping ``engine.train`` stores
    (read as ``engine.evaluate`` reads it), or a plain list of names."""
    if isinstance(labels, Mapping):
        from mmvgm.data.labels import LabelSet

        label_set = LabelSet.from_dict(labels)
        names, display = label_set.names, label_set.display
    else:
        names = display = [str(n) for n in labels or []]
    return list(names), dict(zip(names, display))


class Predictor:
    """Load once, predict many. ``Predictor.from_checkpoint(dir).predict("clip.mp4")``."""

    def __init__(self, model: torch.nn.Module, meta: Mapping[str, Any],
                 device: Optional[str] = None, workers: Optional[int] = None) -> None:
        """``workers``: start that many decoding workers for ``stream`` now, before the model
        moves to the device (see ``mmvgm.predict.pool``); otherwise they start on the first stream."""
        from mmvgm.data.transforms import VideoTransform
        from mmvgm.checkpoint.calibration import Calibration
        from mmvgm.runtime import autocast_dtype, pick_device

        self.meta = dict(meta)
        self.task = str(meta.get("task", "detect"))
        if self.task not in ("detect", "trace", "joint"):
            raise CheckpointError(f"unknown task '{self.task}' in the checkpoint")
        self.labels, self.display = _label_names(meta.get("labels"))
        self.calibration = Calibration.from_dict(meta.get("calibration"))
        self.frames = int(meta.get("frames") or 16)
        self.sampling = str(meta.get("sampling") or "consecutive")
        preprocess = meta.get("preprocess")
        if preprocess is None:
            raise CheckpointError("the checkpoint has no 'preprocess' section")
        self.transform = VideoTransform.from_config(preprocess)
        if self.task == "joint":  # the trace head ranks the sources: every label but real
            self.source_labels = [n for n in self.labels if n != "real"]
            if len(self.source_labels) != len(self.labels) - 1:
                raise CheckpointError("a joint checkpoint's labels need exactly one 'real' class")
        elif self.task == "trace":
            self.source_labels = list(self.labels)
        else:
            self.source_labels = []
        if workers is not None and workers < 0:
            raise InputError(f"workers must be >= 0 (got {workers})")
        self.device = pick_device(device)
        self.autocast = autocast_dtype(self.device)
        self._pool: Optional[DecodePool] = None
        self._pool_lock = threading.Lock()
        if workers:
            self._decode_pool(workers).start()
        self.model = model.to(self.device).eval()
        self.path: Optional[Path] = None

    @classmethod
    def from_checkpoint(cls, checkpoint: Optional[PathLike] = None, device: Optional[str] = None,
                        workers: Optional[int] = None) -> "Predictor":
        """Load ``checkpoint`` (or ``$MMVGM_CHECKPOINT``) with ``engine.checkpoint.load_checkpoint``;
        ``workers``: start that many decoding workers for ``stream`` before the model moves to
        the device (a scan about to run passes its ``--workers``)."""
        from mmvgm.checkpoint.files import load_checkpoint
        from mmvgm.runtime import prepare_decoding_workers

        path = resolve_checkpoint(checkpoint)
        prepare_decoding_workers()  # a chosen fork server imports while the checkpoint loads
        model, meta = load_checkpoint(path)
        predictor = cls(model, meta, device=device, workers=workers)
        predictor.path = path
        return predictor

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
    def _autocast(self):
        if self.autocast is None:
            return nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.autocast)

    def logits(self, pixels_uint8: torch.Tensor) -> Dict[str, np.ndarray]:
        """Raw head logits for a uint8 batch (B,T,3,S,S) after the geometric transform."""
        return self.submit(pixels_uint8)()

    def submit(self, pixels_uint8: torch.Tensor) -> Callable[[], Dict[str, np.ndarray]]:
        """Start scoring a batch; returns a function that waits for its raw logits.

        On CUDA the logits are copied to pinned host memory behind the batch's own kernels, so
        a caller can submit the next batch before collecting this one and the GPU never idles
        while the host turns results into records (``stream`` keeps one batch in flight).
        """
        with torch.inference_mode(), self._autocast():
            x = self.transform.normalize(pixels_uint8.to(self.device, non_blocking=True))
            out = self.model(x)
            heads = {k: out[k].float() for k in ("detect", "trace") if k in out}
        if self.device.type != "cuda":
            host = {k: v.cpu().numpy() for k, v in heads.items()}
            return lambda: host
        pinned = {k: torch.empty(v.shape, dtype=v.dtype, pin_memory=True) for k, v in heads.items()}
        for k, v in heads.items():
            pinned[k].copy_(v, non_blocking=True)
        done = torch.cuda.Event()
        done.record()

        def collect() -> Dict[str, np.ndarray]:
            done.synchronize()
            return {k: v.numpy() for k, v in pinned.items()}
        return collect

    def probabilities(self, pixels_uint8: torch.Tensor) -> Dict[str, np.ndarray]:
        """Calibrated ``p_fake`` (B,) and/or ``trace_probs`` (B, N)."""
        from mmvgm.checkpoint.calibration import calibrate_outputs

        return calibrate_outputs(self.logits(pixels_uint8), self.calibration, self.task)

    def record(self, path: str, p_fake: Optional[float], trace_probs: Optional[np.ndarray],
               frames: int, sampling: str, padded: int) -> Dict[str, Any]:
        """One result record from calibrated probabilities (see the module docstring)."""
        cal = self.calibration
        rec: Dict[str, Any] = {"path": str(path)}
        verdict = NOT_ASSESSED
        if p_fake is not None:
            rec["fake_probability"] = round(float(p_fake), 6)
            verdict = "fake" if p_fake >= cal.threshold else "real"
        rec["verdict"] = verdict
        if trace_probs is not None:
            order = np.argsort(-np.asarray(trace_probs), kind="stable")
            sources = {self.source_labels[i]: round(float(trace_probs[i]), 6) for i in order}
            top = int(order[0])
            top_p = float(trace_probs[top])
            unknown = cal.open_set_threshold is not None and top_p < cal.open_set_threshold
            rec["source"] = "unknown" if unknown else {"label": self.source_labels[top],
                                                       "probability": round(top_p, 6)}
            rec["sources"] = sources
            if self.task == "trace" and "real" in self.source_labels:
                rec["verdict"] = "real" if self.source_labels[top] == "real" else "fake"
        rec["frames"] = int(frames)
        rec["sampling"] = sampling
        rec["padded"] = int(padded)
        return rec

    def _records(self, paths: Sequence[str], pixels: torch.Tensor, padded: Sequence[int],
                 frames: int, sampling: str) -> List[Dict[str, Any]]:
        return self._records_from_logits(paths, self.logits(pixels), padded, frames, sampling)

    def _records_from_logits(self, paths: Sequence[str], logits: Dict[str, np.ndarray], padded: Sequence[int],
                             frames: int, sampling: str) -> List[Dict[str, Any]]:
        from mmvgm.checkpoint.calibration import calibrate_outputs

        probs = calibrate_outputs(logits, self.calibration, self.task)
        p_fake = probs.get("p_fake")
        trace = probs.get("trace_probs")
        return [self.record(path, None if p_fake is None else p_fake[i],
                            None if trace is None else trace[i], frames, sampling, padded[i])
                for i, path in enumerate(paths)]

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
        """(uint8 (T,3,S,S) after the geometric transform, the decoded ``Clip``). Raises on bad input."""
        from mmvgm.io import read_clip

        clip = read_clip(path, num_frames=self.frames if frames is None else frames, sampling=sampling or self.sampling,
                         start=start)
        return self.transform.geometric(clip), clip

    def predict(self, path: PathLike, frames: Optional[int] = None, sampling: Optional[str] = None,
                windows: int = 1) -> Dict[str, Any]:
        """Score one video; raises ``InputError``/``DecodeError`` for a bad file.

        ``windows > 1``: that many clips spread evenly over the video (consecutive frames, or
        ``stride:K`` when that is the sampling; ``uniform`` becomes consecutive per window).
        The top-level scores are the mean of the windows' calibrated probabilities; each
        window's own scores are under ``"windows"``.
        """
        frames = self.check_frames(frames)
        sampling = sampling or self.sampling
        if windows < 1:
            raise InputError(f"--windows must be >= 1 (got {windows})")
        if windows == 1:
            pixels, clip = self.load_clip(path, frames, sampling)
            return self._records([str(path)], pixels[None], [int(getattr(clip, "padded", 0))],
                                 frames, sampling)[0]
        return self._predict_windows(str(path), frames, sampling, windows)

    def _predict_windows(self, path: str, frames: int, sampling: str, windows: int) -> Dict[str, Any]:
        from mmvgm.io import parse_sampling, probe, read_clips

        spec = parse_sampling(sampling)  # a bad spec: InputError, not a ValueError from int()
        window_sampling = sampling if spec.kind == "stride" else "consecutive"
        step = spec.stride if spec.kind == "stride" else 1
        info = probe(path)
        total = int(info.frames)
        span = (frames - 1) * step + 1
        starts = sorted({int(round(s)) for s in np.linspace(0, max(total - span, 0), windows)})
        clips, padded, indices = [], [], []
        # One decoding pass per group of windows (same frames as load_clip per window); groups
        # bound the decoded frames held at once.
        group = max(1, _WINDOW_GROUP_BYTES // max(frames * info.width * info.height * 3, 1))
        for first in range(0, len(starts), group):
            for clip in read_clips(path, frames, starts[first:first + group], window_sampling):
                clips.append(self.transform.geometric(clip))
                padded.append(int(getattr(clip, "padded", 0)))
                idx = getattr(clip, "indices", None)
                indices.append([int(i) for i in idx] if idx is not None else None)
        probs = self.probabilities(torch.stack(clips))
        p_fake, trace = probs.get("p_fake"), probs.get("trace_probs")
        per_window = []
        for i, start in enumerate(starts):
            rec = self.record(path, None if p_fake is None else p_fake[i],
                              None if trace is None else trace[i], frames, window_sampling, padded[i])
            rec.pop("path")
            rec["start"] = start
            if indices[i]:
                rec["end"] = indices[i][-1]
            per_window.append(rec)
        agg = self.record(path, None if p_fake is None else float(p_fake.mean()),
                          None if trace is None else trace.mean(axis=0), frames, window_sampling,
                          max(padded))
        agg["aggregation"] = "mean"
        agg["windows"] = per_window
        return agg

    def predict_batch(self, paths: Sequence[PathLike], frames: Optional[int] = None,
                      sampling: Optional[str] = None, batch_size: int = 8,
                      workers: Optional[int] = None) -> List[Dict[str, Any]]:
        """Score many videos; a bad file gives ``{"path", "error"}`` instead of raising.
        ``workers``: decoding processes; by default the predictor's running ones, else none."""
        if workers is None:
            workers = self._pool.workers if self._pool is not None else 0
        out: List[Dict[str, Any]] = []
        for batch in self.stream([str(p) for p in paths], batch_size=batch_size, workers=workers,
                                 frames=frames, sampling=sampling):
            out.extend(batch)
        return out

    def stream(self, paths: Sequence[str], batch_size: int = 8, workers: int = 2,
               frames: Optional[int] = None, sampling: Optional[str] = None
               ) -> Iterator[List[Dict[str, Any]]]:
        """Yield one list of records per batch, in input order; decoding runs in ``workers``
        DataLoader processes, overlapped with inference (``workers=0`` decodes in-process).
        The workers stay up for this predictor's next stream, until ``close()``."""
        if batch_size < 1:
            raise InputError(f"--batch-size must be >= 1 (got {batch_size})")
        if workers < 0:
            raise InputError(f"--workers must be >= 0 (got {workers})")
        frames = self.check_frames(frames)
        sampling = sampling or self.sampling
        if not paths:
            return
        with self._pool_lock:  # two threads must not both take the free pool
            pool = self._decode_pool(workers)
            pool.busy = True
        try:
            chunks = pool.decode([(path, frames, sampling) for path in paths], worker_chunk(batch_size, workers))
            yield from self._scored_batches(grouped(chunks, batch_size, self.device), workers, frames, sampling)
        except Exception:
            if pool is self._pool:  # a worker died or the pool broke: the next stream starts afresh
                self.close()
            raise
        finally:
            pool.done()

    def _decode_pool(self, workers: int) -> DecodePool:
        """This predictor's decoding pool for ``workers`` (made or remade as needed), or a
        one-off pool while it is busy with another stream."""
        if self._pool is not None and self._pool.busy:
            return DecodePool(self.transform.geometric, workers, self.device, persistent=False)
        if self._pool is None or self._pool.workers != workers:
            self.close()
            self._pool = DecodePool(self.transform.geometric, workers, self.device)
        return self._pool

    def _scored_batches(self, groups: Iterator[Tuple[List[dict], Optional[torch.Tensor]]], workers: int,
                        frames: int, sampling: str) -> Iterator[List[Dict[str, Any]]]:
        from mmvgm.runtime import CpuThreadsByLoad

        with CpuThreadsByLoad(self.device, workers) as threads:
            pending = None  # one batch in flight: the next is submitted before this one is collected
            while True:
                asked = time.perf_counter()
                group = next(groups, None)
                got = time.perf_counter()
                if group is None:
                    break
                items, pixels = group
                submitted = self.submit(pixels) if pixels is not None else None
                threads.record(waited=got - asked, computed=time.perf_counter() - got)
                if pending is not None:
                    yield self._batch_records(*pending, frames, sampling)
                pending = (items, submitted)
            if pending is not None:
                yield self._batch_records(*pending, frames, sampling)

    def _batch_records(self, items: List[dict], submitted: Optional[Callable[[], Dict[str, np.ndarray]]],
                       frames: int, sampling: str) -> List[Dict[str, Any]]:
        """Records in ``items`` order: scored ones from ``submitted``'s logits, errors as they are."""
        good = [it for it in items if it["error"] is None]
        scored: Dict[int, Dict[str, Any]] = {}
        if good:
            records = self._records_from_logits([it["path"] for it in good], submitted(),
                                                [it["padded"] for it in good], frames, sampling)
            scored = {id(it): rec for it, rec in zip(good, records)}
        return [scored[id(it)] if it["error"] is None else {"path": it["path"], "error": it["error"]}
                for it in items]

    def describe(self) -> Dict[str, Any]:
        cal = self.calibration
        return {"checkpoint": None if self.path is None else str(self.path), "task": self.task,
                "labels": self.labels, "frames": self.frames, "sampling": self.sampling,
                "threshold": cal.threshold, "temperature": cal.temperature,
                "open_set_threshold": cal.open_set_threshold, "device": str(self.device)}
