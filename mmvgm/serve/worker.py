"""Two threads around the predictor: concurrent requests become its batches, and the next
batch decodes while the model scores this one.

Requests put their files on a queue. The decode thread takes up to ``max_batch`` of them,
waiting at most ``max_wait_ms`` after the first for others to arrive, and decodes them with
``Predictor.decode_batch`` (in the predictor's worker pool). The model thread scores each
decoded batch with ``Predictor.score_batch``; the decode thread runs at most one batch ahead.
Work that cannot share a batch (windows, saliency) runs on the model thread as a call of its
own, so the model is only ever used by one thread and a request's numbers do not depend on
what else was in flight.
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


@dataclass
class _Decoded:
    files: List[_File]
    batch: Any          # the predictor's DecodedBatch


class ModelWorker:
    """The threads that own the predictor; ``score`` and ``call`` return futures."""

    def __init__(self, predictor: Any, max_batch: int = 8, max_wait_ms: float = 10.0,
                 on_batch: Optional[Callable[[int], None]] = None) -> None:
        self.predictor = predictor
        self.max_batch, self.max_wait = max(1, int(max_batch)), max(0.0, max_wait_ms / 1000)
        self.on_batch = on_batch
        self._queue: "queue.Queue[Union[_File, _Call, None]]" = queue.Queue()
        self._decoded: "queue.Queue[Union[_Decoded, _Call, None]]" = queue.Queue(maxsize=1)
        self._held: Optional[Union[_File, _Call]] = None  # a call that ended a batch early
        self._threads = [threading.Thread(target=self._decode_loop, name="mmvgm-decode", daemon=True),
                         threading.Thread(target=self._model_loop, name="mmvgm-model", daemon=True)]
        for thread in self._threads:
            thread.start()

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
        for thread in self._threads:
            thread.join(timeout)

    # ------------------------------------------------------------------ the decode thread
    def _decode_loop(self) -> None:
        while True:
            first = self._held if self._held is not None else self._queue.get()
            self._held = None
            if first is None or isinstance(first, _Call):
                self._decoded.put(first)  # in order, after the batches before it
                if first is None:
                    return
                continue
            files = self._gather(first)
            if files:
                decoded = self._decode(files)
                if decoded is not None:
                    self._decoded.put(decoded)

    def _gather(self, first: _File) -> List[_File]:
        """``first`` and the files that arrive within ``max_wait`` of it, up to ``max_batch``
        (those whose request gave up are dropped)."""
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

    def _decode(self, files: List[_File]) -> Optional[_Decoded]:
        if self.on_batch is not None:
            self.on_batch(len(files))
        try:
            return _Decoded(files, self.predictor.decode_batch([f.path for f in files]))
        except Exception as exc:  # noqa: BLE001 - every waiting request gets the error
            _fail(files, exc, "decoding")
            return None

    # ------------------------------------------------------------------ the model thread
    def _model_loop(self) -> None:
        while True:
            item = self._decoded.get()
            if item is None:
                return
            if isinstance(item, _Call):
                _run_call(item)
                continue
            try:
                verdicts = self.predictor.score_batch(item.batch)
            except Exception as exc:  # noqa: BLE001
                _fail(item.files, exc, "scoring")
                continue
            for f, verdict in zip(item.files, verdicts):
                f.future.set_result(replace(verdict, path=f.name))


def _fail(files: List[_File], exc: Exception, stage: str) -> None:
    log.error("%s a batch of %d failed", stage, len(files), exc_info=exc)
    for f in files:
        f.future.set_exception(exc)


def _run_call(call: _Call) -> None:
    if not call.future.set_running_or_notify_cancel():
        return
    try:
        call.future.set_result(call.fn())
    except BaseException as exc:  # noqa: BLE001 - handed to the request
        call.future.set_exception(exc)
