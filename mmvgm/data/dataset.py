"""The one dataset: videos as uint8 clips for training, validation, eval, trace and scan.

Finding them (folder layout or manifest) is :func:`mmvgm.io.discovery.discover`'s job; this
module takes its :class:`~mmvgm.io.discovery.Sample` s, or ``(path, frames, sampling)``
requests from a predictor's decoding workers.

:class:`VideoDataset` reads clips with ``mmvgm.io.read_clip`` inside ``__getitem__`` (nothing
is opened in ``__init__``, so it works in DataLoader workers), keeps them uint8 and applies the
transform's geometric stage so clips stack. Every item is a :class:`ClipItem`: pixels, or the
one-line reason the file could not be read. :func:`collate_items` stacks the good ones and
keeps every item in order (scan writes an error line for each bad one); :func:`make_loader` is
the one loader factory, and its :class:`SkipLog` (the one bad-file report) says each bad path
once per loader, across workers and epochs, and never stops the epoch.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import (Any, Callable, Dict, Iterable, Iterator, List, Mapping, NamedTuple, Optional, Sequence,
                    Tuple, Union)

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from mmvgm.data.labels import LabelSet
from mmvgm.errors import InputError, MMVGMError
from mmvgm.io.discovery import Sample

log = logging.getLogger("mmvgm.data")


# -- torch dataset --------------------------------------------------------------------------
#: A clip to decode by path: ``(path, frames, sampling)``; what a predictor's workers are sent.
Request = Tuple[str, int, str]


@dataclass
class ClipItem:
    """One decoded clip, or why it could not be decoded (then ``pixels`` is ``None``).

    ``pixels``: uint8 (T,C,S,S) after the transform's geometric stage (so clips stack);
    ``label``: the class index, -1 for unlabelled files; ``padded``: frames repeated at the end
    of a short video."""

    path: str
    label: int = -1
    pixels: Optional[torch.Tensor] = None
    padded: int = 0
    error: Optional[str] = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def without_pixels(self) -> "ClipItem":
        return ClipItem(self.path, self.label, None, self.padded, self.error)


class Batch(NamedTuple):
    """Collated items, in input order. ``clips`` (uint8 (B,T,C,H,W)), ``labels``, ``paths`` and
    ``padded`` cover the decoded items only; ``clips`` is ``None`` when none decoded."""

    items: List[ClipItem]
    clips: Optional[torch.Tensor]
    labels: torch.Tensor
    paths: List[str]
    padded: List[int]

    @property
    def size(self) -> int:
        return len(self.paths)

    @property
    def skipped(self) -> List[Tuple[str, str]]:
        """``(path, reason)`` of the items that could not be decoded."""
        return [(it.path, it.error) for it in self.items if not it.ok]


def _default_reader(path: str, **kwargs: Any) -> np.ndarray:
    from mmvgm.io import read_clip

    return read_clip(path, **kwargs)


class VideoDataset(Dataset):
    """The one dataset: a :class:`ClipItem` per sample (training, validation, eval) or per
    :data:`Request` (a predictor's decoding workers); it never raises for a bad file.

    ``label_to_index``: a dict name -> index or a :class:`LabelSet`; samples without a label
    get index -1. ``reader`` defaults to ``mmvgm.io.read_clip`` (a picklable top-level callable,
    for DataLoader workers; eval's perturbations wrap it).
    """

    def __init__(self, samples: Sequence[Sample] = (), label_to_index: Union[Mapping[str, int], LabelSet, None] = None,
                 num_frames: int = 16, sampling: str = "consecutive", transform: Optional[Any] = None,
                 start: int = 0, backend: str = "auto", max_pixels: Optional[int] = None,
                 max_frames: Optional[int] = None, reader: Optional[Callable[..., np.ndarray]] = None) -> None:
        if isinstance(label_to_index, LabelSet):
            label_to_index = label_to_index.label_to_index
        self.samples = list(samples)
        self.label_to_index = dict(label_to_index or {})
        for s in self.samples:
            if s.label is not None and s.label not in self.label_to_index:
                known = ", ".join(self.label_to_index)
                raise InputError(f"label '{s.label}' is not one of the model's labels: {known}", s.path)
        self.transform = transform
        self.reader = reader or _default_reader
        self.read_kwargs = {"num_frames": int(num_frames), "sampling": sampling, "start": int(start),
                            "backend": backend, "max_pixels": max_pixels, "max_frames": max_frames}

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, key: Union[int, Request]) -> ClipItem:
        if isinstance(key, tuple):
            path, frames, sampling = key
            return self.decode(str(path), -1, num_frames=int(frames), sampling=sampling)
        sample = self.samples[key]
        return self.decode(sample.path, -1 if sample.label is None else self.label_to_index[sample.label])

    def clip(self, path: str, **overrides: Any) -> Tuple[torch.Tensor, Any]:
        """(uint8 (T,C,S,S) after the geometric transform, the decoded clip) for ``path`` with the
        dataset's settings (``overrides``: e.g. num_frames, sampling, start); raises on bad input."""
        clip = self.reader(path, **{**self.read_kwargs, **overrides})
        video = torch.from_numpy(np.ascontiguousarray(clip))  # (T,H,W,C) uint8
        if self.transform is not None:
            return self.transform.geometric(video, layout="channels_last"), clip
        return video.permute(0, 3, 1, 2).contiguous(), clip

    def decode(self, path: str, label: int = -1, **overrides: Any) -> ClipItem:
        """:meth:`clip` as an item: a bad file becomes an item with ``error`` set."""
        try:
            video, clip = self.clip(path, **overrides)
        except MMVGMError as exc:
            return ClipItem(path, label, error=exc.message)
        except Exception as exc:  # noqa: BLE001 - one broken file must not stop an epoch or a scan
            return ClipItem(path, label, error=f"{type(exc).__name__}: {exc}".splitlines()[0])
        return ClipItem(path, label, video, int(getattr(clip, "padded", 0)))


def collate_items(items: Sequence[ClipItem]) -> Batch:
    """Stack the decoded items (uint8); keep every item, in order, without its pixels."""
    good = [it for it in items if it.ok]
    shapes = {tuple(it.pixels.shape) for it in good}
    if len(shapes) > 1:
        raise InputError(f"clips in one batch have different shapes {sorted(shapes)}; "
                         "give the dataset a transform with a crop so they stack")
    clips = torch.stack([it.pixels for it in good]) if good else None
    labels = torch.tensor([it.label for it in good], dtype=torch.long)
    return Batch([it.without_pixels() for it in items], clips, labels, [it.path for it in good],
                 [it.padded for it in good])


class SkipLog:
    """The one bad-file report: remembers unreadable files and says each once (a warning on
    ``mmvgm.data``, or ``say``), across workers, epochs and passes."""

    def __init__(self, logger: Optional[logging.Logger] = None,
                 say: Optional[Callable[[str], None]] = None) -> None:
        self.bad: Dict[str, str] = {}
        self.logger = logger or log
        self.say = say

    def update(self, skipped: Iterable[Tuple[str, str]]) -> List[Tuple[str, str]]:
        """Record ``(path, reason)`` pairs; returns (and reports) the ones not seen before."""
        new = []
        for path, reason in skipped:
            if path not in self.bad:
                self.bad[path] = reason
                new.append((path, reason))
                message = f"skipping unreadable file {path}: {reason}"
                self.say(message) if self.say is not None else self.logger.warning(message)
        return new

    def to_json(self) -> List[Dict[str, str]]:
        return [{"path": p, "reason": r} for p, r in self.bad.items()]

    def __len__(self) -> int:
        return len(self.bad)


class SkipBadLoader(DataLoader):
    """A DataLoader whose batches' bad files are reported once through ``skip_log``.

    If a wrapper (e.g. ``accelerate.prepare``) rebuilds the loader, call
    ``skip_log.update(batch.skipped)`` in the loop instead; the batches still carry them.
    """

    skip_log: SkipLog

    def __iter__(self) -> Iterator[Batch]:  # type: ignore[override]
        for batch in super().__iter__():
            if isinstance(batch, Batch) and batch.skipped:
                self.skip_log.update(batch.skipped)
            yield batch


def _seed_worker(worker_id: int) -> None:
    import random

    seed = torch.initial_seed() % 2**32  # distinct per worker, derived from the loader's generator
    np.random.seed(seed)
    random.seed(seed)


def make_loader(dataset: Dataset, batch_size: int, shuffle: bool = False, workers: int = 0,
                seed: int = 2024, drop_last: bool = False, pin_memory: Optional[bool] = None,
                persistent_workers: bool = False, skip_log: Optional[SkipLog] = None,
                multiprocessing_context: Optional[str] = None,
                sampler: Optional[torch.utils.data.Sampler] = None, passes: Optional[int] = 1) -> SkipBadLoader:
    """The one loader factory: a seeded DataLoader with :func:`collate_items`; same ``seed`` ->
    same order. ``sampler`` replaces the seeded shuffle (training's per-epoch permutation).

    ``passes``: how many times the loader will be read (training's epochs; ``None``: unknown).
    With the dataset's size it decides whether the workers read with torchcodec, whose import
    only many files earn back (``runtime.workers.torchcodec_pays``); the frames are the same.

    ``multiprocessing_context``: ``None`` (``$MMVGM_WORKER_START``, else the platform default,
    fork on Linux) or e.g. ``"forkserver"``/``"spawn"`` when the main process already runs CUDA
    or other threads (see ``runtime.workers.worker_start_method``).
    """
    if batch_size < 1:
        raise InputError(f"batch size must be >= 1, got {batch_size}")
    if workers < 0:
        raise InputError(f"workers must be >= 0, got {workers}")
    if workers > 0:
        from mmvgm.runtime import prepare_decoding_workers
        from mmvgm.runtime.workers import torchcodec_pays

        files = None if passes is None else len(dataset) * passes
        method = prepare_decoding_workers(torchcodec=torchcodec_pays(files, workers))
        multiprocessing_context = multiprocessing_context or method
    generator = torch.Generator()
    generator.manual_seed(int(seed))
    loader = SkipBadLoader(
        dataset, batch_size=batch_size, shuffle=shuffle if sampler is None else False, sampler=sampler,
        num_workers=workers, collate_fn=collate_items, generator=generator,
        worker_init_fn=_seed_worker if workers > 0 else None, drop_last=drop_last,
        pin_memory=torch.cuda.is_available() if pin_memory is None else pin_memory,
        persistent_workers=persistent_workers and workers > 0,
        multiprocessing_context=multiprocessing_context if workers > 0 else None,
    )
    loader.skip_log = skip_log if skip_log is not None else SkipLog()
    return loader
