"""One model thread: concurrent requests become the predictor's batches.

Requests put their files on a queue; the thread takes up to ``max_batch`` of them, waiting at
most ``max_wait_ms`` after the first for others to arrive, and scores them with
``Predictor.predict_batch`` (decoding in the predictor's worker pool). Work that cannot share a
batch (windows, saliency) runs on the same thread as a call of its own, so the model is only
ever used by one thread and a request's numbers do not depend on what else was in flight.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, replace
from typing import Any, Callable, List, Optional, Union

from mmvgm.predict.verdict import Verdict

log = logging.getLogger("mmvgm.serve")


@dataclass
class _File:
    path: str           # where the bytes are
    name: str           # what the record calls it (the upload's name, a job's path)
    future: Future


@dataclass
class _Call:
    fn: Callable[[], Any]
    future: Future


class ModelWorker:
    """The thread that owns the predictor; ``score`` and ``call`` return futures."""

    def __init__(self, predictor: Any, max_batch: int = 8, max_wait_ms: float = 10.0,
                 on_batch: Optional[Callable[[int], None]] = None) -> None:
        self.predictor = predictor
        self.max_batch, self.max_wait = max(1, int(max_batch)), max(0.0, max_wait_ms / 1000)
        self.on_batch = on_batch
        self._queue: "queue.Queue[Union[_File, _Call, None]]" = queue.Queue()
        self._held: Optional[Union[_File, _Call]] = None  # a call that ended a batch early
        self._thread = threading.Thread(target=self._run, name="mmvgm-model", daemon=True)
        self._thread.start()

    @property
    def depth(self) -> int:
        """Requests waiting for the model (the queue-depth gauge)."""
        return self._queue.qsize()

    def score(self, path: str, name: str) -> "Future[Verdict]":
        """Score one file in the next batch; the verdict is named ``name``."""
        item = _File(path, name, Future())
        self._queue.put(item)
        return item.future

    def call(self, fn: Callable[[], Any]) -> Future:
        """Run ``fn`` on the model thread, between batches."""
        item = _Call(fn, Future())
        self._queue.put(item)
        return item.future

    def close(self, timeout: float = 10.0) -> None:
        self._queue.put(None)
        self._thread.join(timeout)

    # ------------------------------------------------------------------ the thread
    def _run(self) -> None:
        while True:
            first = self._held if self._held is not None else self._queue.get()
            self._held = None
            if first is None:
                return
            if isinstance(first, _Call):
                self._run_call(first)
                continue
            self._run_batch(self._gather(first))

    def _gather(self, first: _File) -> List[_File]:
        """``first`` and the files that arrive within ``max_wait`` of it, up to ``max_batch``."""
        batch = [first]
        deadline = time.monotonic() + self.max_wait
        while len(batch) < self.max_batch:
            try:
                item = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if not isinstance(item, _File):  # a call or the stop: after this batch
                self._held = item
                break
            batch.append(item)
        return [f for f in batch if f.future.set_running_or_notify_cancel()]

    def _run_batch(self, batch: List[_File]) -> None:
        if not batch:
            return
        if self.on_batch is not None:
            self.on_batch(len(batch))
        try:
            # batch_size is the largest batch, not this one's size: the pool splits a batch into
            # chunks by divisors of batch_size, and an odd size (7) would go one file per chunk.
            verdicts = self.predictor.predict_batch([f.path for f in batch], batch_size=self.max_batch)
        except Exception as exc:  # noqa: BLE001 - every waiting request gets the error
            log.exception("scoring a batch of %d failed", len(batch))
            for f in batch:
                f.future.set_exception(exc)
            return
        for f, verdict in zip(batch, verdicts):
            f.future.set_result(replace(verdict, path=f.name))

    @staticmethod
    def _run_call(call: _Call) -> None:
        if not call.future.set_running_or_notify_cancel():
            return
        try:
            call.future.set_result(call.fn())
        except BaseException as exc:  # noqa: BLE001 - handed to the request
            call.future.set_exception(exc)
