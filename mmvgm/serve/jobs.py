"""Scan jobs in a database (SQLite by default, PostgreSQL for several replicas).

A job is a list of files; each file is ``pending`` until its result line is stored. A runner
claims a job with a lease that a heartbeat renews while it works; when a server dies
(``kill -9``), its lease runs out and any server, the restarted one included, claims the job
and goes on with the files still pending. A result is stored only ``WHERE status = 'pending'``, in the same
transaction that counts it, so every file has exactly one line in the results even when two
servers race over an expired lease.
"""
from __future__ import annotations

import logging
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import sqlalchemy as sa

from mmvgm.errors import InputError

log = logging.getLogger("mmvgm.serve")
STATUSES = ("queued", "running", "done")

_meta = sa.MetaData()
jobs_table = sa.Table(
    "mmvgm_jobs", _meta,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("created", sa.Float, nullable=False),
    sa.Column("total", sa.Integer, nullable=False),
    sa.Column("done", sa.Integer, nullable=False, default=0),
    sa.Column("errors", sa.Integer, nullable=False, default=0),
    sa.Column("owner", sa.String(64)),
    sa.Column("lease_until", sa.Float),
    sa.Column("upload_dir", sa.Text),
)
files_table = sa.Table(
    "mmvgm_job_files", _meta,
    sa.Column("job_id", sa.String(32), sa.ForeignKey("mmvgm_jobs.id"), primary_key=True),
    sa.Column("idx", sa.Integer, primary_key=True),
    sa.Column("name", sa.Text, nullable=False),     # the record's path
    sa.Column("location", sa.Text, nullable=False),  # where the bytes are
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("result", sa.Text),
)


def _engine(url: str) -> sa.Engine:
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        @sa.event.listens_for(engine, "connect")
        def _wal(dbapi_conn: Any, _: Any) -> None:  # readers do not block the runner's writes
            dbapi_conn.execute("PRAGMA journal_mode=WAL")
            dbapi_conn.execute("PRAGMA synchronous=NORMAL")
        return engine
    return sa.create_engine(url, pool_pre_ping=True)


class JobStore:
    """Jobs and their results behind a SQLAlchemy URL."""

    def __init__(self, url: str) -> None:
        try:
            if url.startswith("sqlite:///"):
                Path(url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
            self.engine = _engine(url)
            _meta.create_all(self.engine)
        except OSError as exc:
            raise InputError(f"cannot open the jobs database {url}: {exc.strerror}") from None
        except sa.exc.SQLAlchemyError as exc:
            raise InputError(f"cannot open the jobs database {sa.make_url(url).render_as_string()}: "
                             f"{str(exc.orig if hasattr(exc, 'orig') else exc).splitlines()[0]}") from None
        except ModuleNotFoundError as exc:
            raise InputError(f"the jobs database needs the {exc.name} driver: pip install {exc.name}") from None

    def create(self, files: Sequence[Tuple[str, str]], upload_dir: Optional[str] = None) -> str:
        """A queued job over ``(name, location)`` pairs; returns its id."""
        job = uuid.uuid4().hex
        with self.engine.begin() as conn:
            conn.execute(jobs_table.insert().values(id=job, status="queued", created=time.time(),
                                                    total=len(files), done=0, errors=0, upload_dir=upload_dir))
            conn.execute(files_table.insert(), [{"job_id": job, "idx": i, "name": name, "location": loc,
                                                 "status": "pending"} for i, (name, loc) in enumerate(files)])
        return job

    def status(self, job: str) -> Optional[Dict[str, Any]]:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(jobs_table).where(jobs_table.c.id == job)).mappings().first()
        if row is None:
            return None
        return {"job": job, "status": row["status"], "total": row["total"], "done": row["done"],
                "errors": row["errors"]}

    def results(self, job: str, chunk: int = 500) -> Iterator[str]:
        """The job's result lines in input order, read a chunk at a time."""
        last = -1
        while True:
            with self.engine.connect() as conn:
                rows = conn.execute(sa.select(files_table.c.idx, files_table.c.result)
                                    .where(files_table.c.job_id == job, files_table.c.status == "done",
                                           files_table.c.idx > last)
                                    .order_by(files_table.c.idx).limit(chunk)).all()
            for idx, result in rows:
                yield result + "\n"
            if len(rows) < chunk:
                return
            last = rows[-1][0]

    def upload_dirs(self) -> set:
        """The upload folders that jobs still name."""
        with self.engine.connect() as conn:
            return {row[0] for row in conn.execute(sa.select(jobs_table.c.upload_dir)
                                                   .where(jobs_table.c.upload_dir.is_not(None)))}

    def pending_files(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(files_table)
                                    .where(files_table.c.status == "pending")).scalar_one())

    # ------------------------------------------------------------------ the runner's side
    def claim(self, owner: str, lease_s: float) -> Optional[str]:
        """Take a queued job, or a running one whose lease ran out; None when there is none."""
        now = time.time()
        with self.engine.begin() as conn:
            candidates = conn.execute(
                sa.select(jobs_table.c.id).where(
                    (jobs_table.c.status == "queued")
                    | ((jobs_table.c.status == "running") & (jobs_table.c.lease_until < now)))
                .order_by(jobs_table.c.created).limit(5)).scalars().all()
        for job in candidates:
            with self.engine.begin() as conn:  # compare-and-set: one server wins a job
                taken = conn.execute(
                    jobs_table.update().where(
                        jobs_table.c.id == job,
                        (jobs_table.c.status == "queued")
                        | ((jobs_table.c.status == "running") & (jobs_table.c.lease_until < now)))
                    .values(status="running", owner=owner, lease_until=now + lease_s)).rowcount
            if taken:
                return job
        return None

    def next_files(self, job: str, limit: int) -> List[Tuple[int, str, str]]:
        with self.engine.connect() as conn:
            return [tuple(r) for r in conn.execute(
                sa.select(files_table.c.idx, files_table.c.name, files_table.c.location)
                .where(files_table.c.job_id == job, files_table.c.status == "pending")
                .order_by(files_table.c.idx).limit(limit)).all()]

    def store(self, job: str, results: Sequence[Tuple[int, str, bool]], lease_s: float,
              owner: Optional[str] = None) -> Optional[int]:
        """Store results (``(idx, JSONL line, is an error)``) once each and renew the lease;
        returns how many were new, or None when ``owner`` no longer holds the job (its lease ran
        out and another server took it: the results are still stored, once, but it should stop)."""
        with self.engine.begin() as conn:
            new = errors = 0
            for idx, line, failed in results:
                n = conn.execute(files_table.update().where(
                    files_table.c.job_id == job, files_table.c.idx == idx, files_table.c.status == "pending")
                    .values(status="done", result=line)).rowcount
                new += n
                errors += n if failed else 0
            conn.execute(jobs_table.update().where(jobs_table.c.id == job).values(
                done=jobs_table.c.done + new, errors=jobs_table.c.errors + errors))
            where = [jobs_table.c.id == job] + ([jobs_table.c.owner == owner] if owner else [])
            held = conn.execute(jobs_table.update().where(*where).values(lease_until=time.time() + lease_s)).rowcount
        return new if held else None

    def renew(self, job: str, owner: str, lease_s: float) -> bool:
        """Extend ``owner``'s lease on a running ``job``; False when it no longer holds it."""
        with self.engine.begin() as conn:
            return bool(conn.execute(jobs_table.update().where(
                jobs_table.c.id == job, jobs_table.c.owner == owner, jobs_table.c.status == "running")
                .values(lease_until=time.time() + lease_s)).rowcount)

    def finish(self, job: str) -> Optional[str]:
        """Mark ``job`` done once no file is pending; returns its upload folder (to remove)."""
        with self.engine.begin() as conn:
            left = conn.execute(sa.select(sa.func.count()).select_from(files_table).where(
                files_table.c.job_id == job, files_table.c.status == "pending")).scalar_one()
            if left:
                return None
            conn.execute(jobs_table.update().where(jobs_table.c.id == job).values(status="done", lease_until=None))
            return conn.execute(sa.select(jobs_table.c.upload_dir).where(jobs_table.c.id == job)).scalar_one()


class JobRunner:
    """A thread that claims jobs and scores their files through ``score``: ``(name, location)``
    pairs in, ``(JSONL line, is an error)`` pairs out (the model worker)."""

    def __init__(self, store: JobStore, score: Callable[[List[Tuple[str, str]]], List[Tuple[str, bool]]],
                 batch: int = 8, lease_s: float = 30.0, poll_s: float = 0.5,
                 on_done: Callable[[Optional[str]], None] = lambda folder: None) -> None:
        self.store, self.score, self.batch = store, score, batch
        self.lease_s, self.poll_s, self.on_done = lease_s, poll_s, on_done
        self.owner = uuid.uuid4().hex
        self.wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="mmvgm-jobs", daemon=True)

    def start(self) -> "JobRunner":
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self.wake.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                job = self.store.claim(self.owner, self.lease_s)
                if job is None:
                    self.wake.wait(self.poll_s)
                    self.wake.clear()
                    continue
                self._work(job)
            except Exception:  # noqa: BLE001 - a broken database must not end the thread
                log.exception("job runner")
                self._stop.wait(self.poll_s)

    def _work(self, job: str) -> None:
        """Score ``job``'s pending files batch by batch, a heartbeat renewing the lease meanwhile
        (a batch may wait behind trace traffic for longer than a lease)."""
        done, lost = threading.Event(), threading.Event()
        beat = threading.Thread(target=self._heartbeat, args=(job, done, lost), name="mmvgm-lease", daemon=True)
        beat.start()
        try:
            self._work_files(job, lost)
        finally:
            done.set()
            beat.join()

    def _heartbeat(self, job: str, done: threading.Event, lost: threading.Event) -> None:
        while not done.wait(self.lease_s / 3):
            try:
                if not self.store.renew(job, self.owner, self.lease_s):
                    lost.set()
                    return
            except Exception:  # noqa: BLE001 - a database hiccup: the next beat tries again
                log.warning("job %s: could not renew the lease", job, exc_info=True)

    def _work_files(self, job: str, lost: threading.Event) -> None:
        while not self._stop.is_set() and not lost.is_set():
            files = self.store.next_files(job, self.batch)
            if not files:
                self.on_done(self.store.finish(job))
                return
            lines = self.score([(name, location) for _, name, location in files])
            held = self.store.store(job, [(idx, line, failed) for (idx, _, _), (line, failed) in zip(files, lines)],
                                    self.lease_s, owner=self.owner)
            if held is None or lost.is_set():
                log.warning("job %s: taken over by another server after its lease ran out; leaving it", job)
                return
