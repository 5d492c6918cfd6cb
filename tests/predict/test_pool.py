"""DecodePool: decoding workers kept alive across a predictor's streams."""
from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import torch

from mmvgm.predict.pool import worker_chunk
from mmvgm.errors import InputError
from mmvgm.predict.predictor import Predictor
from tests.inference_helpers import as_list, make_checkpoint, make_videos
from tests.io.conftest import needs_torchcodec


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "joint", "joint")


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    return [str(v) for v in make_videos(tmp_path_factory.mktemp("videos"), 5, frames=12)]


@pytest.fixture(scope="module")
def expected(ckpt, videos):
    with Predictor.from_checkpoint(ckpt, device="cpu") as pred:
        return pred.predict_batch(videos, batch_size=2, workers=0)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:  # a zombie is not a worker any more
        return f.read().split(")")[-1].split()[0] != "Z"


def _probabilities(records):
    return [r.get("fake_probability") for r in records]


def test_worker_chunks_divide_the_batch_and_spread_it():
    assert worker_chunk(16, 14) == 2 and worker_chunk(8, 2) == 4 and worker_chunk(8, 3) == 2
    assert worker_chunk(8, 0) == 8 and worker_chunk(8, 1) == 8 and worker_chunk(7, 4) == 1


def test_workers_start_with_the_predictor_and_serve_every_stream(ckpt, videos, expected):
    with Predictor.from_checkpoint(ckpt, device="cpu", workers=2) as pred:
        pids = pred._pool.worker_pids
        assert len(pids) == 2 and all(_alive(pid) for pid in pids)  # forked before any stream
        for _ in range(3):
            got = pred.predict_batch(videos, batch_size=2)  # default: the running workers
            assert [r["path"] for r in got] == videos
            assert _probabilities(got) == pytest.approx(_probabilities(expected), abs=1e-6)
            assert pred._pool.worker_pids == pids
    assert not any(_alive(pid) for pid in pids)  # close() stopped them


def test_an_abandoned_stream_leaves_nothing_behind_for_the_next(ckpt, videos, expected):
    with Predictor.from_checkpoint(ckpt, device="cpu") as pred:
        stream = pred.stream(videos, batch_size=2, workers=2)
        first = next(stream)
        assert [r["path"] for r in first] == videos[:2]
        stream.close()  # chunks still in flight in the workers
        got = pred.predict_batch(videos[::-1], batch_size=2, workers=2)
        assert [r["path"] for r in got] == videos[::-1]
        assert _probabilities(got) == pytest.approx(_probabilities(expected)[::-1], abs=1e-6)


def test_interleaved_streams_each_get_their_own_files(ckpt, videos, expected):
    with Predictor.from_checkpoint(ckpt, device="cpu") as pred:
        a = pred.stream(videos, batch_size=1, workers=2)
        b = pred.stream(videos[::-1], batch_size=1, workers=2)  # the pool is busy: a one-off pool
        got_a, got_b = [], []
        for batch_a, batch_b in zip(a, b):
            got_a += batch_a
            got_b += batch_b
        assert [r["path"] for r in got_a] == videos and [r["path"] for r in got_b] == videos[::-1]
        assert _probabilities(got_b) == pytest.approx(_probabilities(expected)[::-1], abs=1e-6)
        assert not pred._pool.busy


def test_another_worker_count_replaces_the_pool(ckpt, videos, expected):
    with Predictor.from_checkpoint(ckpt, device="cpu", workers=1) as pred:
        old = pred._pool.worker_pids
        got = pred.predict_batch(videos, batch_size=2, workers=2)
        assert _probabilities(got) == pytest.approx(_probabilities(expected), abs=1e-6)
        assert len(pred._pool.worker_pids) == 2 and not any(_alive(pid) for pid in old)


def test_a_negative_worker_count_is_an_input_error(ckpt):
    with pytest.raises(InputError, match="workers must be >= 0"):
        Predictor.from_checkpoint(ckpt, device="cpu", workers=-1)


def test_closing_during_a_stream_lets_it_finish_then_stops_the_workers(ckpt, videos, expected):
    pred = Predictor.from_checkpoint(ckpt, device="cpu", workers=2)
    pids = pred._pool.worker_pids
    stream = pred.stream(videos, batch_size=1, workers=2)
    got = next(stream)
    pred.close()  # e.g. the end of a `with` block while the stream is suspended
    got += [r for batch in stream for r in batch]
    assert [r["path"] for r in got] == videos  # no file silently dropped
    assert _probabilities(got) == pytest.approx(_probabilities(expected), abs=1e-6)
    assert not any(_alive(pid) for pid in pids)


@pytest.mark.parametrize("wait", [True, False], ids=["reported-dead", "dying-as-the-stream-starts"])
def test_a_worker_that_dies_between_streams_is_replaced_without_raising_elsewhere(ckpt, videos, expected,
                                                                                   wait):
    import signal
    import time

    with Predictor.from_checkpoint(ckpt, device="cpu", workers=2) as pred:
        first = pred._pool.worker_pids
        os.kill(first[0], signal.SIGKILL)  # e.g. the out-of-memory killer, while the pool is idle
        deadline = time.time() + 10
        while wait and _alive(first[0]) and time.time() < deadline:
            time.sleep(0.05)  # the caller's own code runs on, undisturbed by SIGCHLD
        got = pred.predict_batch(videos, batch_size=2)
        assert [r["path"] for r in got] == videos
        assert _probabilities(got) == pytest.approx(_probabilities(expected), abs=1e-6)
        assert len(pred._pool.worker_pids) == 2 and first[0] not in pred._pool.worker_pids


def test_threads_streaming_through_one_predictor_each_get_their_own_files(ckpt, videos, expected):
    from concurrent.futures import ThreadPoolExecutor

    orders = [videos, videos[::-1], videos[1:] + videos[:1]]
    with Predictor.from_checkpoint(ckpt, device="cpu", workers=2) as pred:
        with ThreadPoolExecutor(3) as threads:
            results = list(threads.map(lambda order: pred.predict_batch(order, batch_size=2), orders * 2))
    by_path = dict(zip(videos, _probabilities(expected)))
    for order, got in zip(orders * 2, results):
        assert [r["path"] for r in got] == order
        assert _probabilities(got) == pytest.approx([by_path[p] for p in order], abs=1e-6)


def test_workers_forked_from_an_executor_thread_exit_cleanly(videos):
    # Forked from a ThreadPoolExecutor thread (a service scoring from one), a worker used to end
    # with code 1 at exit ("cannot join current thread"): it inherited the executor's threads.
    from concurrent.futures import ThreadPoolExecutor

    from mmvgm.data.dataset import VideoDataset, collate_items
    from mmvgm.data.transforms import VideoTransform
    from mmvgm.predict.pool import DecodePool

    def one_pass():
        dataset = VideoDataset(transform=VideoTransform(resize_shortest=32, crop=32))
        pool = DecodePool(dataset.__getitem__, collate_items, 2, torch.device("cpu"), persistent=False)
        items = [item for chunk in pool.decode([(v, 4, "uniform") for v in videos], 1) for item in chunk.items]
        pids = pool.worker_pids
        pool.done()  # not persistent: the workers stop
        return [it.error for it in items], [pool.exit_codes.get(pid) for pid in pids]

    with ThreadPoolExecutor(1) as thread:
        errors, exit_codes = thread.submit(one_pass).result()
    assert errors == [None] * len(videos)
    assert exit_codes == [0, 0]


# A pool's own decode and collate (module functions: they pickle by reference, for any start method).
def _numbered(request):
    path, frames, _ = request
    if path == "die":
        os.kill(os.getpid(), 9)  # the out-of-memory killer, in the middle of a file
    if path.startswith("/"):  # a marker file: which requests were decoded so far
        open(path, "w").close()
    return {"path": path, "pixels": torch.full((frames, 3), float(len(path))), "error": None}


def _stacked(items):
    return {"items": [it["path"] for it in items], "pixels": torch.stack([it["pixels"] for it in items])}


def _broken_collate(items):
    raise ValueError("no collating today")


def _pool(workers=2, collate=_stacked):
    from mmvgm.predict.pool import DecodePool

    return DecodePool(_numbered, collate, workers, torch.device("cpu"))


@pytest.mark.parametrize("frames", [2, 40_000], ids=["through-the-pipe", "through-shared-memory"])
def test_chunks_come_back_in_order_with_their_tensors(frames):
    from mmvgm.predict.pool import PIPE_TENSOR_BYTES

    pool = _pool()
    try:
        paths = ["a" * n for n in range(1, 12)]
        chunks = list(pool.decode([(p, frames, "x") for p in paths], 3))
        assert [c["items"] for c in chunks] == [paths[i:i + 3] for i in range(0, len(paths), 3)]
        assert (chunks[0]["pixels"].nbytes > PIPE_TENSOR_BYTES) == (frames > 2)
        for chunk in chunks:
            expected = torch.stack([torch.full((frames, 3), float(len(p))) for p in chunk["items"]])
            assert torch.equal(chunk["pixels"], expected)
    finally:
        pool.close()
    assert list(pool.exit_codes.values()) == [0, 0]


@pytest.mark.parametrize("tensor", [
    torch.arange(24, dtype=torch.uint8).reshape(2, 3, 4), torch.randn(3, 5).t(), torch.tensor(3.5),
    torch.zeros(0, 4), torch.tensor([True, False]), torch.randn(4).to(torch.bfloat16), torch.arange(5),
], ids=["uint8", "transposed", "0-dim", "empty", "bool", "bfloat16", "int64"])
def test_a_small_tensor_is_pickled_by_value_exactly(tensor):
    import pickle

    from mmvgm.predict.pool import _ChunkPickler

    data = _ChunkPickler.dumps(("key", tensor), pickle.HIGHEST_PROTOCOL)
    key, back = pickle.loads(data)
    assert key == "key" and back.dtype == tensor.dtype and back.shape == tensor.shape
    assert torch.equal(back, tensor)
    if tensor.numel():  # writable, and its own memory
        back[...] = ~back if back.dtype == torch.bool else back + 1
        assert not torch.equal(back, tensor)


def test_a_large_tensor_is_left_to_shared_memory():
    import pickle

    from mmvgm.predict.pool import PIPE_TENSOR_BYTES, _ChunkPickler

    big = torch.zeros(PIPE_TENSOR_BYTES + 1, dtype=torch.uint8)
    assert len(_ChunkPickler.dumps(big, pickle.HIGHEST_PROTOCOL)) < 4096  # a handle, not the bytes


def test_a_pass_holds_a_bounded_number_of_chunks(tmp_path):
    from mmvgm.predict.pool import IN_FLIGHT_PER_WORKER

    pool = _pool()
    try:
        chunks = pool.decode([(str(tmp_path / f"{i:02d}"), 1, "x") for i in range(30)], 1)
        next(chunks)
        time.sleep(1.0)  # the workers would go on decoding if nothing held them
        assert len(list(tmp_path.iterdir())) <= IN_FLIGHT_PER_WORKER * 2
        assert len(list(chunks)) == 29
    finally:
        pool.close()


def test_a_worker_dying_during_a_pass_raises_and_the_next_pass_has_workers_again():
    from mmvgm.predict.pool import DecodeWorkerError

    pool = _pool()
    try:
        chunks = pool.decode([("a", 1, "x")] * 4 + [("die", 1, "x")] + [("b", 1, "x")] * 4, 1)
        assert next(chunks)["items"] == ["a"]
        with pytest.raises(DecodeWorkerError, match="ended with exit code -9 during the pass"):
            list(chunks)
        assert -9 in pool.exit_codes.values()
        assert [c["items"] for c in pool.decode([("c", 1, "x")] * 3, 1)] == [["c"]] * 3
        assert len(pool.worker_pids) == 2
    finally:
        pool.close()


def test_a_file_that_kills_its_worker_at_once_raises_after_one_retry():
    from mmvgm.predict.pool import DecodeWorkerError

    pool = _pool()
    try:
        with pytest.raises(DecodeWorkerError, match="during the pass"):
            list(pool.decode([("die", 1, "x"), ("a", 1, "x")], 1))
    finally:
        pool.close()


def _unstackable_collate(items):
    raise InputError("clips in one batch have different shapes")


def test_a_collate_that_raises_is_reported_in_one_line():
    from mmvgm.predict.pool import DecodeWorkerError

    pool = _pool(collate=_broken_collate)
    try:
        with pytest.raises(DecodeWorkerError, match="ValueError: no collating today") as err:
            list(pool.decode([("a", 1, "x")], 1))
        assert "\n" not in str(err.value)  # the traceback is logged, not put in the message
    finally:
        pool.close()
    pool = _pool(collate=_unstackable_collate)
    try:  # a project error comes back as itself, so the CLI prints its one line
        with pytest.raises(InputError, match="different shapes"):
            list(pool.decode([("a", 1, "x")], 1))
    finally:
        pool.close()


def _threads(request):
    from mmvgm.runtime.threads import decoder_threads

    return (torch.get_num_threads(), decoder_threads())


def test_workers_get_the_thread_policys_threads_for_decoding_workers(monkeypatch):
    from mmvgm.predict.pool import DecodePool
    from mmvgm.runtime.threads import DECODE_THREADS_ENV, decoder_threads, worker_torch_threads

    monkeypatch.delenv(DECODE_THREADS_ENV, raising=False)
    pool = DecodePool(_threads, as_list, 2, torch.device("cpu"))
    try:
        got = [threads for chunk in pool.decode([("a", 1, "x")] * 4, 1) for threads in chunk]
    finally:
        pool.close()
    assert got == [(worker_torch_threads(), decoder_threads(env={}, in_worker=True))] * 4 == [(1, 1)] * 4


_FROM_A_THREAD = """
import json, sys, threading
import torch
from mmvgm.predict.pool import DecodePool
from tests.inference_helpers import backend_read, as_list

found = {}
def one_pass():  # off the main thread, as a service loads its model: the fork server starts the workers
    pool = DecodePool(backend_read, as_list, 2, torch.device("cpu"), torchcodec=sys.argv[2] == "yes")
    found["read by"] = sorted({b for chunk in pool.decode([(sys.argv[1], 3, "x")] * 4, 1) for b in chunk})
    pool.close()
thread = threading.Thread(target=one_pass)
thread.start()
thread.join()
found["imported here"] = "torchcodec.decoders" in sys.modules
print(json.dumps(found))
"""


@needs_torchcodec
@pytest.mark.parametrize("torchcodec, read_by", [("yes", ["torchcodec"]), ("no", ["pyav"])])
def test_fork_server_workers_read_with_torchcodec_only_when_asked_and_this_process_skips_it(
        videos, torchcodec, read_by):
    """A service starts its workers from a thread, so from a fork server: the server imports
    torchcodec beside this process, which reads with PyAV itself and never pays that import."""
    import json
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", _FROM_A_THREAD, videos[0], torchcodec], capture_output=True,
                          text=True, timeout=180, cwd=Path(__file__).resolve().parents[2])
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == {"read by": read_by, "imported here": False}
