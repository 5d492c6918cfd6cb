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
from typing import Any, Callable, List, Optional

from mmvgm.predict.verdict import Verdict

log = logging.getLogger("mmvgm.serve")
_STOP = object()     # close() was called
_NOTHING = object()  # nothing held over from the last gathering


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
        self._queue: "queue.Queue[Any]" = queue.Queue()    # _File, _Call or _STOP
        self._decoded: "queue.Queue[Any]" = queue.Queue(maxsize=1)  # _Decoded, _Call or _STOP
        self._held: Any = _NOTHING  # a call (or the stop) that ended a gathering early
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
        self._queue.put(_STOP)
        for thread in self._threads:
            thread.join(timeout)

    # ------------------------------------------------------------------ the decode thread
    def _decode_loop(self) -> None:
        while True:
            first = self._queue.get() if self._held is _NOTHING else self._held
            self._held = _NOTHING
            if first is _STOP or isinstance(first, _Call):
                self._decoded.put(first)  # in order, after the batches before it
                if first is _STOP:
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
        """The batch decoded; when that fails (a decoding worker killed by one file), each file
        alone, so one bad file fails only itself: scored files go on as one-file batches, and
        a file that fails alone gets a failed verdict (its request a 422, its job an error line)."""
        if self.on_batch is not None:
            self.on_batch(len(files))
        try:
            return _Decoded(files, self.predictor.decode_batch([f.path for f in files]))
        except Exception as exc:  # noqa: BLE001 - retried file by file below
            log.warning("decoding a batch of %d failed (%s); decoding its files one at a time", len(files), exc)
        for f in files:
            try:
                self._decoded.put(_Decoded([f], self.predictor.decode_batch([f.path])))
            except Exception as exc:  # noqa: BLE001 - this file's own failure
                message = " ".join(str(exc).split()) or type(exc).__name__
                f.future.set_result(Verdict.failed(f.name, f"could not be decoded: {message}"))
        return None

    # ------------------------------------------------------------------ the model thread
    def _model_loop(self) -> None:
        while True:
            item = self._decoded.get()
            if item is _STOP:
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
