"""The job store on SQLite and on PostgreSQL: claims, leases, and every result stored once.

PostgreSQL runs when ``MMVGM_TEST_POSTGRES_URL`` names a database (``.ci/run`` starts Debian's
server and sets it); CI fails rather than skips without it.
"""
from __future__ import annotations

import json
import os
import threading
import time
import uuid

import pytest

pytest.importorskip("sqlalchemy")

from mmvgm.serve.jobs import JobRunner, JobStore  # noqa: E402

PG_ENV = "MMVGM_TEST_POSTGRES_URL"


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path):
    if request.param == "sqlite":
        return JobStore(f"sqlite:///{tmp_path / 'jobs.sqlite'}")
    url = os.environ.get(PG_ENV)
    if not url:
        if os.environ.get("CI"):
            pytest.fail(f"CI must test PostgreSQL: set {PG_ENV} (.ci/run starts a server)")
        pytest.skip(f"no PostgreSQL: set {PG_ENV}")
    store = JobStore(url)
    with store.engine.begin() as conn:  # a shared server: start from empty tables
        conn.exec_driver_sql("DELETE FROM mmvgm_job_files")
        conn.exec_driver_sql("DELETE FROM mmvgm_jobs")
    return store


def files(n: int, tag: str = ""):
    return [(f"{tag}v{i:03d}.mp4", f"/data/{tag}v{i:03d}.mp4") for i in range(n)]


def fake_score(pairs):
    return [(f'{{"path": "{name}"}}', name.endswith("3.mp4")) for name, _ in pairs]


def test_a_job_goes_from_queued_to_done(store):
    job = store.create(files(5))
    assert store.status(job) == {"job": job, "status": "queued", "total": 5, "done": 0, "errors": 0}
    owner = uuid.uuid4().hex
    assert store.claim(owner, lease_s=30) == job
    assert store.status(job)["status"] == "running"
    pending = store.next_files(job, 3)
    assert [idx for idx, _, _ in pending] == [0, 1, 2]
    lines = fake_score([(name, loc) for _, name, loc in pending])
    assert store.store(job, [(idx, line, bad) for (idx, _, _), (line, bad) in zip(pending, lines)], 30) == 3
    assert store.finish(job) is None  # two files left
    rest = store.next_files(job, 10)
    lines = fake_score([(name, loc) for _, name, loc in rest])
    store.store(job, [(idx, line, bad) for (idx, _, _), (line, bad) in zip(rest, lines)], 30)
    store.finish(job)
    assert store.status(job) == {"job": job, "status": "done", "total": 5, "done": 5, "errors": 1}
    assert list(store.results(job, chunk=2)) == [f'{{"path": "v{i:03d}.mp4"}}\n' for i in range(5)]


def test_a_result_is_stored_once_even_when_two_servers_score_it(store):
    job = store.create(files(2))
    assert store.store(job, [(0, '{"a": 1}', False)], 30) == 1
    assert store.store(job, [(0, '{"a": 2}', True), (1, '{"b": 1}', False)], 30) == 1  # 0 was done already
    assert store.status(job)["done"] == 2 and store.status(job)["errors"] == 0
    assert list(store.results(job)) == ['{"a": 1}\n', '{"b": 1}\n']


def test_only_one_server_claims_a_job_until_its_lease_runs_out(store):
    job = store.create(files(1))
    assert store.claim("a", lease_s=0.5) == job
    assert store.claim("b", lease_s=0.5) != job
    time.sleep(0.7)
    assert store.claim("b", lease_s=30) == job  # the first server stopped renewing: taken over
    assert store.claim("a", lease_s=30) != job


def test_two_runners_sharing_the_database_score_every_file_once(store):
    job = store.create(files(40, tag=uuid.uuid4().hex[:6]))
    scored = []
    lock = threading.Lock()

    def score(pairs):
        time.sleep(0.01)
        with lock:
            scored.extend(name for name, _ in pairs)
        return fake_score(pairs)

    runners = [JobRunner(store, score, batch=4, lease_s=30, poll_s=0.05).start() for _ in range(2)]
    deadline = time.monotonic() + 30
    while store.status(job)["status"] != "done" and time.monotonic() < deadline:
        time.sleep(0.05)
    for runner in runners:
        runner.stop()
    status = store.status(job)
    assert status["status"] == "done" and status["done"] == 40
    lines = list(store.results(job))
    assert len(lines) == 40 and len(set(lines)) == 40
    assert len(scored) == 40  # one runner held the job: nothing was scored twice


def test_a_database_that_cannot_be_opened_is_one_line(tmp_path):
    from mmvgm.errors import InputError

    (tmp_path / "f").write_text("x")
    with pytest.raises(InputError, match="cannot open the jobs database"):
        JobStore(f"sqlite:///{tmp_path / 'f' / 'jobs.sqlite'}")
    with pytest.raises(InputError, match="cannot open the jobs database"):
        JobStore("postgresql+psycopg://nobody@127.0.0.1:1/none?connect_timeout=2")


def test_two_replicas_share_jobs_through_the_database(store, make_client, serve_data):
    """Two services on one database: a job posted to one is seen, scored and read from the other."""
    url = store.engine.url.render_as_string(hide_password=False)
    first, second = make_client(database_url=url), make_client(database_url=url)
    videos = serve_data["videos"]
    job = first.post("/v1/jobs", files=[("file", (v.name, v.read_bytes())) for v in videos]).json()["job"]
    deadline = time.monotonic() + 60
    while second.get(f"/v1/jobs/{job}").json()["status"] != "done" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert second.get(f"/v1/jobs/{job}").json()["done"] == len(videos)
    lines = second.get(f"/v1/jobs/{job}/results").text
    assert lines == first.get(f"/v1/jobs/{job}/results").text
    assert [json.loads(x)["path"] for x in lines.splitlines()] == [v.name for v in videos]


def test_a_server_whose_lease_was_taken_over_is_told_to_stop(store):
    job = store.create(files(2))
    assert store.claim("a", lease_s=0.3) == job
    time.sleep(0.5)
    assert store.claim("b", lease_s=30) == job
    assert store.store(job, [(0, '{"a": 1}', False)], 30, owner="a") is None  # stored, but a must stop
    assert store.store(job, [(1, '{"b": 1}', False)], 30, owner="b") == 1
    assert list(store.results(job)) == ['{"a": 1}\n', '{"b": 1}\n'] and store.status(job)["done"] == 2


def test_a_heartbeat_keeps_the_lease_while_a_batch_is_slow(store):
    """A batch that takes longer than the lease (queued behind trace traffic) keeps the job:
    no other server can claim it meanwhile."""
    job = store.create(files(2, tag=uuid.uuid4().hex[:6]))
    claimed = threading.Event()

    def slow(pairs):
        claimed.set()
        time.sleep(1.2)  # three leases of 0.4 s
        return fake_score(pairs)

    runner = JobRunner(store, slow, batch=1, lease_s=0.4, poll_s=0.05).start()
    try:
        assert claimed.wait(10)
        for _ in range(8):
            assert store.claim("other", lease_s=30) is None
            time.sleep(0.1)
        deadline = time.monotonic() + 20
        while store.status(job)["status"] != "done" and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        runner.stop()
    assert store.status(job)["done"] == 2
