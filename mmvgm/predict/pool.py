"""Decoding for ``Predictor.stream``: worker processes decode clips while the model scores.

A :class:`DecodePool` keeps its workers alive from one stream to the next, so a predictor
that scores many lists, as a service does, forks its workers once. A ``Predictor`` loaded
with ``workers=N`` starts its pool before its model moves to the GPU, where a fork is cheap:
forking a process that holds a CUDA context and a model is slow with many workers.

Each worker is a ``multiprocessing.Process`` with its own pipe: the pool sends it chunks of
requests, it answers each with one collated chunk. Large tensors travel through shared memory
(the reductions ``torch.multiprocessing`` registers), small ones through the pipe with the rest
of the chunk (:class:`_ChunkPickler`).

Requests are ``(path, frames, sampling)``, decoded by the project's one dataset
(``data.dataset.VideoDataset``) and collated by its ``collate_items``. A bad file becomes an
item with ``error`` set, never an exception, so one bad file cannot stop a scan.
"""
from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.connection
import os
import pickle
import signal
import traceback
import weakref
from collections import deque
from contextlib import nullcontext
from multiprocessing.reduction import ForkingPickler
from typing import Any, Callable, Deque, Dict, Iterator, List, Optional, Sequence, Set, Tuple

import torch
import torch.multiprocessing  # noqa: F401 - registers the shared-memory reductions for tensors

from mmvgm.data.dataset import Batch, ClipItem, Request
from mmvgm.errors import MMVGMError

log = logging.getLogger("mmvgm.predict")

Decode = Callable[[Request], Any]
Collate = Callable[[List[Any]], Any]

#: Chunks sent to a worker and not answered yet: one it decodes, one waiting (as DataLoader's
#: ``prefetch_factor=2``). It also bounds a pass's chunks in flight or ready to this per worker.
IN_FLIGHT_PER_WORKER = 2
#: How long a worker asked to stop may take before it is terminated.
_STOP_TIMEOUT_S = 10.0
#: How often an idle worker checks that the process that started it is still there.
_PARENT_CHECK_S = 5.0


def worker_chunk(batch_size: int, workers: int) -> int:
    """Files per chunk: the largest divisor of ``batch_size`` that still gives every worker a
    share of one batch. A worker collating a whole batch alone would decode it file after file
    while the other workers idle (slow first batch, and short scans never spread)."""
    if workers <= 1:
        return batch_size
    cap = max(1, -(-batch_size // workers))
    return max(d for d in range(1, cap + 1) if batch_size % d == 0)


#: Tensors up to this size travel through the pipe; larger ones through shared memory.
PIPE_TENSOR_BYTES = 1 << 20


def _tensor_from_bytes(data: bytearray, dtype: torch.dtype, shape: Tuple[int, ...]) -> torch.Tensor:
    """The tensor on the bytes it was pickled as (a writable bytearray: no copy)."""
    if not data:
        return torch.empty(shape, dtype=dtype)
    return torch.frombuffer(data, dtype=torch.uint8).view(dtype).reshape(shape)


class _ChunkPickler(ForkingPickler):
    """``ForkingPickler`` (torch's shared-memory reductions included), but a small CPU tensor
    is pickled by value. Shared memory costs a segment, a socket connection with its HMAC
    handshake and a file descriptor passed per tensor, in the worker and here; for a tiny
    model's chunk, a fifth of a megabyte, that is more work than copying it through the pipe."""

    def reducer_override(self, obj: Any) -> Any:
        if (type(obj) is torch.Tensor and obj.device.type == "cpu" and not obj.requires_grad
                and obj.nbytes <= PIPE_TENSOR_BYTES):
            raw = obj.contiguous().view(-1).view(torch.uint8).numpy()
            # a writable buffer pickles as a bytearray: the bytes are copied once, into the pipe
            return _tensor_from_bytes, (pickle.PickleBuffer(raw), obj.dtype, tuple(obj.shape))
        return NotImplemented


def _send_chunk(conn: multiprocessing.connection.Connection, reply: Any) -> None:
    conn.send_bytes(_ChunkPickler.dumps(reply, pickle.HIGHEST_PROTOCOL))


def _failure() -> Any:
    """What a worker sends back for the exception being handled: a project error as itself
    (the caller re-raises it: one line for the user), anything else as its last line, with the
    whole traceback logged in the worker."""
    import sys

    exc = sys.exc_info()[1]
    if isinstance(exc, MMVGMError):
        return exc
    log.error("decoding worker failed:\n%s", traceback.format_exc())
    return f"{type(exc).__name__}: {exc}".splitlines()[0]


class DecodeWorkerError(RuntimeError):
    """A decoding worker died during a pass (killed, out of memory), or its collate raised."""


def _serve(conn: multiprocessing.connection.Connection, decode: Decode, collate: Collate) -> None:
    """A worker's life: answer each ``(key, requests)`` with ``(key, chunk, None)``, or
    ``(key, None, traceback)`` if decoding raised; ``None`` or a closed pipe ends it."""
    from mmvgm.runtime.threads import decoding_worker_init

    # One torch thread and one decoder thread per worker: the workers, decoding side by side,
    # must not fight the model for cores.
    decoding_worker_init()
    # Ctrl-C reaches the whole process group: the parent handles it and stops the workers.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    parent = os.getppid()
    while True:
        if not conn.poll(_PARENT_CHECK_S):
            if os.getppid() != parent:  # orphaned (the parent was killed): nobody will ask again
                return
            continue
        try:
            task = conn.recv()
        except EOFError:
            return
        if task is None:
            return
        key, requests = task
        try:
            reply = (key, collate([decode(request) for request in requests]), None)
        except Exception:  # noqa: BLE001 - reported to the pass, which raises it
            reply = (key, None, _failure())
        _send_chunk(conn, reply)


class _Worker:
    """One decoding process, the pool's end of its pipe, and the chunks sent to it and not
    answered yet (``(pass, chunk index)`` -> requests)."""

    def __init__(self, context: Any, decode: Decode, collate: Collate) -> None:
        self.conn, child = multiprocessing.Pipe()
        self.process = context.Process(target=_serve, args=(child, decode, collate), daemon=True,
                                       name="mmvgm-decode")
        self.process.start()
        child.close()  # the worker holds its end now: a dead worker then reads as EOF here
        self.pid: int = self.process.pid
        self.sent: Dict[Tuple[int, int], List[Request]] = {}
        self.answered = 0  # the last pass it answered a chunk of

    def send(self, key: Tuple[int, int], requests: List[Request]) -> None:
        self.sent[key] = requests
        try:
            self.conn.send((key, requests))
        except OSError:
            pass  # it died: its sentinel tells the pass, which counts the chunk as lost

    def answers(self) -> Iterator[Tuple[Tuple[int, int], Any, Optional[str]]]:
        """The answers already in the pipe (after it died too: answered chunks are not lost)."""
        while True:
            try:
                if not self.conn.poll():
                    return
                key, chunk, failure = pickle.loads(self.conn.recv_bytes())
            except (EOFError, ConnectionError):  # it died (then the chunk is lost with it)
                return
            except OSError as exc:  # a tensor's shared memory could not be had from the worker
                if not self.process.is_alive():
                    return
                raise DecodeWorkerError(f"decoding worker (pid {self.pid}): a chunk could not be "
                                        f"received ({exc})") from exc
            self.sent.pop(key, None)
            self.answered = key[0]
            yield key, chunk, failure

    def ask_to_stop(self) -> None:
        if self.sent:  # busy with chunks nobody will read: no point waiting for them
            self.process.terminate()
            return
        try:
            self.conn.send(None)
        except OSError:
            pass  # already dead

    def join(self) -> Optional[int]:
        """Wait for the process to end (terminating it after a while); its exit code."""
        self.process.join(_STOP_TIMEOUT_S)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join()
        self.conn.close()
        return self.process.exitcode


def _stop(workers: List[_Worker], exit_codes: Dict[int, Optional[int]]) -> None:
    """Stop ``workers`` (all asked first, then all waited for) and empty the list."""
    for worker in workers:
        worker.ask_to_stop()
    for worker in workers:
        exit_codes[worker.pid] = worker.join()
    workers.clear()


class DecodePool:
    """``workers`` processes decoding ``(path, frames, sampling)`` requests with ``decode``
    (request -> item) and ``collate`` (items -> chunk); both must pickle by reference (module
    functions, or objects of module classes) for the fork server and spawn start methods.

    ``persistent=True`` keeps the workers between calls of :meth:`decode`; otherwise they stop
    at :meth:`done`. ``torchcodec``: have the workers read with it (it is imported where they
    start from, ``runtime.workers.prepare_decoding_workers``; once imported, it stays). One pass
    at a time (``busy`` says whether one is under way; its caller calls :meth:`done` after it).
    ``workers=0`` decodes in this process. ``exit_codes`` holds the exit code of every worker
    stopped or lost so far, by PID (negative: killed by that signal).
    """

    def __init__(self, decode: Decode, collate: Collate, workers: int, device: torch.device,
                 persistent: bool = True, torchcodec: bool = True) -> None:
        from mmvgm.runtime import prepare_decoding_workers

        self.workers = workers
        self.device = device
        self.persistent = persistent
        self.busy = False
        self.exit_codes: Dict[int, Optional[int]] = {}
        self._decode = decode
        self._collate = collate
        self._torchcodec = torchcodec
        self._method = prepare_decoding_workers(torchcodec=torchcodec) if workers else None
        self._close_when_done = False
        self._running: List[_Worker] = []  # never rebound: the finalizer below holds it
        self._pass_number = 0  # answers to an earlier pass (abandoned) are dropped
        weakref.finalize(self, _stop, self._running, self.exit_codes)  # garbage collected or exit

    @property
    def worker_pids(self) -> List[int]:
        """PIDs of the running workers (empty before they start)."""
        return [worker.pid for worker in self._running]

    def start(self) -> None:
        """Start the workers now, instead of on the first ``decode``; replaces any that died
        since the last pass (killed, out of memory): nothing was lost with them."""
        for worker in [w for w in self._running if not w.process.is_alive()]:
            self._running.remove(worker)
            self.exit_codes[worker.pid] = worker.join()
        self._fill()

    def _fill(self) -> None:
        while len(self._running) < self.workers:
            self._running.append(_Worker(self._context(), self._decode, self._collate))

    def _context(self) -> Any:
        from mmvgm.runtime.workers import preload_fork_server, start_method_here

        method = start_method_here(self._method)  # per start: a replacement may start off the main thread
        if method == "forkserver":
            preload_fork_server(torchcodec=self._torchcodec)  # takes effect if the server is not running yet
        return multiprocessing.get_context(method)

    def _pinning_device(self):
        # ``pin_memory()`` pins for the current CUDA device: ours must be current (cuda:K under
        # torchrun), or pinning would open a context on another GPU. Making it current
        # initialises CUDA, so it is skipped only where nothing can differ: CUDA not started yet
        # (pinning starts it on GPU 0) and the device is cuda:0. The workers have forked by then.
        if self.device.type != "cuda":
            return nullcontext()
        if (self.device.index or 0) == 0 and not torch.cuda.is_initialized():
            return nullcontext()
        return torch.cuda.device(self.device)

    def _pinned(self, chunk: Any) -> Any:
        """``chunk`` with its tensors in pinned memory on CUDA (so ``grouped`` copies them
        asynchronously), as it is elsewhere."""
        if self.device.type != "cuda":
            return chunk
        with self._pinning_device():
            return _pin(chunk)

    def decode(self, requests: Sequence[Request], chunk: int) -> Iterator[Any]:
        """Collated chunks of ``chunk`` requests each, in order.

        Workers that died while idle are replaced first. A pass left unfinished leaves its
        chunks in flight; their answers are dropped, and resuming it after a newer pass began
        (or after ``close``) raises."""
        chunks = [list(requests[i:i + chunk]) for i in range(0, len(requests), chunk)]
        if not self.workers:
            return (self._pinned(self._collate([self._decode(r) for r in c])) for c in chunks)
        self.start()
        self._pass_number += 1
        return self._pass(self._pass_number, chunks)

    def _pass(self, number: int, chunks: List[List[Request]]) -> Iterator[Any]:
        waiting: Deque[int] = deque(range(len(chunks)))  # chunk indices not sent yet
        ready: Dict[int, Any] = {}
        resent: Set[int] = set()
        for index in range(len(chunks)):
            while index not in ready:
                if number != self._pass_number:
                    raise DecodeWorkerError("this pass was superseded: the pool began another or was closed")
                # Sent or ready chunks stay within IN_FLIGHT_PER_WORKER per worker: memory O(batch).
                self._send(number, chunks, waiting, limit=index + IN_FLIGHT_PER_WORKER * self.workers)
                lost = self._receive(number, ready, resent)
                waiting.extendleft(sorted(lost, reverse=True))  # sent chunks precede waiting ones
                self._fill()
            yield self._pinned(ready.pop(index))

    def _send(self, number: int, chunks: List[List[Request]], waiting: Deque[int], limit: int) -> None:
        """Send waiting chunks below ``limit``, each to the least busy worker while one has room."""
        while waiting and waiting[0] < limit:
            worker = min(self._running, key=lambda w: len(w.sent))
            if len(worker.sent) >= IN_FLIGHT_PER_WORKER:
                return
            index = waiting.popleft()
            worker.send((number, index), chunks[index])

    def _receive(self, number: int, ready: Dict[int, Any], resent: Set[int]) -> List[int]:
        """Wait for answers or deaths; answers to pass ``number`` go into ``ready``. Returns
        the chunks of this pass to send again, lost with workers that died (see ``_bury``)."""
        by_handle = {}
        for worker in self._running:
            by_handle[worker.conn] = by_handle[worker.process.sentinel] = worker
        lost: List[int] = []
        for worker in {by_handle[h] for h in multiprocessing.connection.wait(list(by_handle))}:
            for key, chunk, failure in worker.answers():
                if isinstance(failure, MMVGMError):  # the user's error (e.g. clips that cannot stack)
                    raise failure
                if failure is not None:
                    raise DecodeWorkerError(f"decoding worker (pid {worker.pid}) failed: {failure}")
                if key[0] == number:
                    ready[key[1]] = chunk
            if not worker.process.is_alive():
                lost += self._bury(worker, number, resent)
        return lost

    def _bury(self, worker: _Worker, number: int, resent: Set[int]) -> List[int]:
        """Forget a dead worker; returns the chunks of pass ``number`` it took with it, to send
        again, if it died before answering any: killed while idle, or as the pass began (its
        death may be seen after another worker's first answer). Raises if it died during the
        pass, or took a chunk already sent again (a file that kills every worker it reaches)."""
        self._running.remove(worker)
        code = self.exit_codes[worker.pid] = worker.join()
        lost = [index for (sent_in, index) in worker.sent if sent_in == number]
        if lost and (worker.answered == number or resent.intersection(lost)):
            raise DecodeWorkerError(f"decoding worker (pid {worker.pid}) ended with exit code {code} "
                                    f"during the pass")
        resent.update(lost)
        return lost

    def done(self) -> None:
        """The current pass is over (finished or abandoned); a ``close()`` asked for during it
        happens now, as does the stop of a pool that is not persistent."""
        self.busy = False
        if self._close_when_done or not self.persistent:
            self.close()

    def close(self) -> None:
        """Stop the workers (they also stop when the pool is garbage collected). During a pass
        the workers stop when it is ``done()``: stopping them under it would end it short of
        its files."""
        if self.busy:
            self._close_when_done = True
            return
        self._close_when_done = False
        self._pass_number += 1  # a pass left unfinished cannot resume without its workers
        _stop(self._running, self.exit_codes)


def _pin(obj: Any) -> Any:
    """``obj`` with the tensors in it (in dicts, lists and tuples) in pinned memory."""
    if isinstance(obj, torch.Tensor):
        return obj.pin_memory()
    if isinstance(obj, dict):
        return {k: _pin(v) for k, v in obj.items()}
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):  # a named tuple
        return type(obj)(*(_pin(v) for v in obj))
    if isinstance(obj, (list, tuple)):
        return type(obj)(_pin(v) for v in obj)
    return obj


def grouped(chunks: Iterator[Batch], batch_size: int, device: torch.device
            ) -> Iterator[Tuple[List[ClipItem], Optional[torch.Tensor]]]:
    """Collated chunks -> (items, pixels on ``device`` or None) of ``batch_size`` items; each
    chunk is copied to the device as it arrives (pinned, non-blocking) and joined there."""
    items: List[ClipItem] = []
    parts: List[torch.Tensor] = []
    for chunk in chunks:
        items.extend(chunk.items)
        if chunk.clips is not None:
            parts.append(chunk.clips.to(device, non_blocking=True))
        if len(items) >= batch_size:
            yield items, _joined(parts)
            items, parts = [], []
    if items:
        yield items, _joined(parts)


def _joined(parts: List[torch.Tensor]) -> Optional[torch.Tensor]:
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else torch.cat(parts)
