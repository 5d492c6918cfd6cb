"""A real ``mmvgm serve`` process on loopback: concurrent clients, and a ``kill -9`` mid-job."""
from __future__ import annotations

import json
import threading
import time
from collections import Counter

import pytest

from tests.serve.test_app import assert_same_record, cli_trace

httpx = pytest.importorskip("httpx")


def test_32_concurrent_clients_get_the_cli_answers(live_server, serve_data):
    server = live_server("--workers", "2", "--max-batch", "8", "--max-wait-ms", "20")
    videos = serve_data["videos"]
    expected = {v.name: cli_trace(serve_data, v) for v in videos}
    answers, failures = [], []
    lock = threading.Lock()

    def client(k: int) -> None:
        with httpx.Client(base_url=server.url, timeout=60) as http:
            for i in range(3):  # a bounded loop: 3 requests per client
                video = videos[(k + i) % len(videos)]
                reply = http.post("/v1/trace", files={"file": (video.name, video.read_bytes())})
                with lock:
                    (answers if reply.status_code == 200 else failures).append(reply)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not failures, [(f.status_code, f.text) for f in failures[:3]]
    assert len(answers) == 96
    for reply in answers:
        record = reply.json()
        assert_same_record(record, expected[record["path"]])
    metrics = httpx.get(server.url + "/metrics").text
    value = {line.split()[0]: float(line.split()[1]) for line in metrics.splitlines()
             if line.startswith("mmvgm_batch_size_")}
    assert value["mmvgm_batch_size_sum"] == 96
    assert value["mmvgm_batch_size_count"] < 96  # concurrent requests shared batches


def _wait(server, job: str, until, timeout: float = 120.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = httpx.get(f"{server.url}/v1/jobs/{job}", timeout=10).json()
        if until(status):
            return status
        time.sleep(0.02)
    raise AssertionError(f"job {job}: {status}")


def test_a_job_survives_kill_9_and_scores_every_file_once(live_server, serve_data, tmp_path):
    state = tmp_path / "state"
    lease = ("--job-lease-s", "2", "--max-batch", "2")
    first = live_server(*lease, state_dir=state)
    videos = serve_data["videos"]
    names = [f"clip{i:03d}.mp4" for i in range(60)]
    files = [("file", (name, videos[i % len(videos)].read_bytes())) for i, name in enumerate(names)]
    job = httpx.post(first.url + "/v1/jobs", files=files, timeout=60).json()["job"]
    partial = _wait(first, job, lambda s: s["done"] >= 6)
    first.kill()  # SIGKILL to the server's process group, mid-job
    assert partial["status"] == "running" and partial["done"] < 60, partial
    second = live_server(*lease, state_dir=state)
    done = _wait(second, job, lambda s: s["status"] == "done")
    assert done["total"] == done["done"] == 60 and done["errors"] == 0
    lines = httpx.get(f"{second.url}/v1/jobs/{job}/results", timeout=30).text.splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["path"] for r in records] == names  # every file once, in order
    assert Counter(r["path"] for r in records).most_common(1)[0][1] == 1
    expected = {v.name: cli_trace(serve_data, v) for v in videos}
    for i, record in enumerate(records):
        assert_same_record({**record, "path": videos[i % len(videos)].name}, expected[videos[i % len(videos)].name])
    assert not (state / "uploads" / "x").exists() and list((state / "uploads").iterdir()) == []


def test_an_upload_is_streamed_to_disk_not_held_in_memory(live_server):
    """A 150 MB upload moves the server's memory by far less than its size."""
    import psutil

    server = live_server("--workers", "0")
    process = psutil.Process(server.proc.pid)
    size, chunk = 150 * 2**20, b"\0" * 2**20
    before = process.memory_info().rss
    peak, done = before, threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, process.memory_info().rss)
            time.sleep(0.005)

    def body():
        yield b'--b\r\nContent-Disposition: form-data; name="file"; filename="big.mp4"\r\n\r\n'
        for _ in range(size // len(chunk)):
            yield chunk
        yield b"\r\n--b--\r\n"

    watcher = threading.Thread(target=sample)
    watcher.start()
    try:
        answer = httpx.post(server.url + "/v1/trace", content=body(), timeout=120,
                            headers={"content-type": "multipart/form-data; boundary=b"})
    finally:
        done.set()
        watcher.join()
    assert answer.status_code == 422, answer.text  # zeros: no decoder opens it
    assert (peak - before) < 40 * 2**20, f"RSS grew {(peak - before) / 2**20:.0f} MB for a 150 MB upload"
