"""The FastAPI app: routes over :class:`Service`, which holds the model thread, jobs and encoder.

Handlers stay thin: save the upload, hand it to the library, turn the result into JSON. Every
error a client can cause is an ``MMVGMError`` and becomes a 4xx with ``{"detail": "<one
line>"}``; anything else is logged with its traceback and answered 500 with a short body.
"""
from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import re
import shutil
import tempfile
import threading
import time
import uuid
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, AsyncIterator, Dict, List, Optional

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles

from mmvgm.errors import LimitError, MMVGMError
from mmvgm.serve import schemas
from mmvgm.serve.auth import BearerAuth
from mmvgm.serve.jobs import JobRunner, JobStore
from mmvgm.serve.metrics import CONTENT_TYPE_LATEST, Metrics, MetricsMiddleware
from mmvgm.serve.settings import ServeSettings
from mmvgm.serve.forms import ClientGone, MalformedForm, StreamedForm, UploadedFile, read_form
from mmvgm.serve.uploads import BodyLimit, request_folder
from mmvgm.serve.worker import ModelWorker

log = logging.getLogger("mmvgm.serve")
STATIC = Path(__file__).with_name("static")


class ServiceError(Exception):
    """An answer other than 200 that is not the client's fault alone (503 loading, 504 timeout)."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status, self.detail = status, detail


class Service:
    """What the routes share: the predictor behind its model thread, the job store and runner,
    the protect encoder, the metrics. ``start`` loads the model in a thread (``/readyz``)."""

    def __init__(self, settings: ServeSettings, predictor: Any = None, encoder: Any = None,
                 lpips: Any = None) -> None:
        self.settings = settings
        self.predictor, self.encoder, self.lpips = predictor, encoder, lpips
        self.worker: Optional[ModelWorker] = None
        self.metrics = Metrics(queue_depth=lambda: self.worker.depth if self.worker else 0)
        self.state_dir = Path(settings.state_dir).resolve()  # jobs keep absolute upload paths
        self.tmp: Optional[Path] = None  # this process's scratch folder for request files (made by start)
        self.store: Optional[JobStore] = None
        self.runner: Optional[JobRunner] = None
        self.protect_lock = threading.Lock()
        self.ready = threading.Event()
        self.failed: Optional[str] = None

    # ------------------------------------------------------------------ life
    def start(self) -> None:
        # Local, and this process's own: replicas may share --state-dir on a network filesystem.
        sweep_dead_scratch()
        self.tmp = Path(tempfile.mkdtemp(prefix=f"{SCRATCH_PREFIX}{os.getpid()}-"))
        self.store = JobStore(self.settings.db_url)
        sweep_orphan_uploads(self.state_dir / "uploads", self.store)
        self.metrics.jobs.set_function(self.store.pending_files)
        threading.Thread(target=self._load, name="mmvgm-load", daemon=True).start()

    def _load(self) -> None:
        try:
            # The budgets go to the predictor, which applies them to every read (its decoding
            # workers included); the process-wide defaults stay as they are.
            if self.predictor is None:
                from mmvgm.predict.predictor import Predictor

                workers, threads = serving_threads(self.settings)
                self.predictor = Predictor.from_checkpoint(
                    self.settings.checkpoint, device=self.settings.device, workers=workers, threads=threads,
                    precision=self.settings.precision, max_pixels=self.settings.max_pixels,
                    max_frames=self.settings.max_frames)
                from mmvgm.io.backends import preload_decoders

                # Before /readyz: the first request, decoded here, pays no imports. Not torchcodec:
                # reads in this process use several decoder threads, hence PyAV; workers that
                # read with it loaded it where they started (runtime.workers).
                preload_decoders(torchcodec=False)
            if self.encoder is None and self.settings.protect_encoder:
                self.encoder, self.lpips = load_protect_encoder(self.settings, self.predictor.device)
            self.worker = ModelWorker(self.predictor, self.settings.max_batch, self.settings.max_wait_ms,
                                      on_batch=self.metrics.batch.observe)
            self.runner = JobRunner(self.store, self._score_job_files, batch=self.settings.max_batch,
                                    lease_s=self.settings.job_lease_s, poll_s=self.settings.job_poll_s,
                                    on_done=self._job_done).start()
            self.ready.set()
            log.info("ready: %s", self.predictor.describe())
        except Exception as exc:  # noqa: BLE001 - /readyz reports it; the process stays up for /healthz
            self.failed = str(exc)
            log.exception("loading the model failed")

    def stop(self) -> None:
        if self.runner is not None:
            self.runner.stop()
        if self.worker is not None:
            self.worker.close()
        if self.predictor is not None and hasattr(self.predictor, "close"):
            self.predictor.close()
        if self.tmp is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def not_ready(self) -> Optional[str]:
        """Why the service cannot score yet (``/readyz``'s 503 and every route's), or None."""
        if self.ready.is_set():
            return None
        if self.failed:
            return "the model failed to load: " + self.failed
        return "the model is still loading; retry when /readyz answers 200"

    def require_ready(self) -> None:
        reason = self.not_ready()
        if reason is not None:
            raise ServiceError(503, reason)

    # ------------------------------------------------------------------ work
    async def form(self, request: Request, folder: Path) -> StreamedForm:
        """The request's form (``serve.forms``), read within the request timeout (408 after it)."""
        try:
            return await asyncio.wait_for(read_form(request, folder), self.settings.request_timeout_s)
        except asyncio.TimeoutError:
            raise ServiceError(408, f"the upload did not arrive within the request timeout of "
                                    f"{self.settings.request_timeout_s:g} s") from None

    async def wait(self, future: Any, what: str, on_timeout: Optional[Any] = None) -> Any:
        """The future's result within the request timeout (504 after it; the work is cancelled
        if it has not started, and ``on_timeout`` asks work under way to stop)."""
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), self.settings.request_timeout_s)
        except asyncio.TimeoutError:
            future.cancel()
            if on_timeout is not None:
                on_timeout()
            raise ServiceError(504, f"{what} took longer than the request timeout of "
                                    f"{self.settings.request_timeout_s:g} s") from None

    def _score_job_files(self, files: List[tuple]) -> List[tuple]:
        from mmvgm.predict.scan import jsonl_line

        futures = [self.worker.score(location, name) for name, location in files]
        verdicts = [future.result() for future in futures]
        return [(jsonl_line(v), not v.ok) for v in verdicts]

    @staticmethod
    def _job_done(upload_dir: Optional[str]) -> None:
        if upload_dir:
            shutil.rmtree(upload_dir, ignore_errors=True)


SCRATCH_PREFIX = "mmvgm-serve-"
ORPHAN_AGE_S = 24 * 3600


def sweep_dead_scratch() -> None:
    """Remove the local scratch folders of servers on this machine that died (``kill -9``):
    each folder is named after its server's PID."""
    for folder in Path(tempfile.gettempdir()).glob(f"{SCRATCH_PREFIX}*-*"):
        pid = folder.name[len(SCRATCH_PREFIX):].split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def sweep_orphan_uploads(uploads: Path, store: JobStore, age_s: float = ORPHAN_AGE_S) -> None:
    """Remove upload folders that no job names and that are older than ``age_s`` (an upload cut
    off before its job was created). By age, because a replica sharing the state folder may be
    receiving into a new one right now."""
    if not uploads.is_dir():
        return
    named = store.upload_dirs()
    cutoff = time.time() - age_s
    for folder in uploads.iterdir():
        if str(folder) not in named and folder.is_dir() and folder.stat().st_mtime < cutoff:
            shutil.rmtree(folder, ignore_errors=True)


def serving_threads(settings: ServeSettings) -> tuple:
    """``(decoding workers, compute threads)`` of the service's predictor.

    Workers default to scan's count. On a CPU with workers, the compute threads leave a core to
    each worker for good: the model thread scores one batch per call, too short for the adaptive
    split a scan's loop learns, and the full count fights the workers for the same cores.
    ``--threads`` / ``$MMVGM_THREADS`` fix the count instead.
    """
    from mmvgm.runtime import default_decode_workers, pick_device
    from mmvgm.runtime.threads import fixed_threads, may_set_cpu_threads, threads_leaving_worker_cores

    workers = default_decode_workers() if settings.workers is None else settings.workers
    threads = fixed_threads(settings.threads)
    if threads is None and may_set_cpu_threads(pick_device(settings.device), workers):
        threads = threads_leaving_worker_cores(workers)
    return workers, threads


def load_protect_encoder(settings: ServeSettings, device: Any) -> tuple:
    """The encoder and LPIPS model ``mmvgm protect`` would load for the same options."""
    from mmvgm.attacks.files import load_protection, resolve_options

    cfg, _ = resolve_options(settings.protect_config)
    name = None if settings.protect_encoder == "auto" else settings.protect_encoder
    encoder, lpips, note = load_protection(cfg, name, settings.protect_model_path, settings.lpips_weights, device)
    if note:
        log.info("protect reports: %s", note)
    return encoder, lpips


def create_app(settings: ServeSettings, predictor: Any = None, encoder: Any = None, lpips: Any = None) -> FastAPI:
    """The service for ``settings``. ``predictor`` / ``encoder``: use these instead of loading
    ``settings.checkpoint`` / ``settings.protect_encoder`` (tests, embedding in another app)."""
    service = Service(settings.check(), predictor=predictor, encoder=encoder, lpips=lpips)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        service.start()
        yield
        await run_in_threadpool(service.stop)

    app = FastAPI(title="mmvgm", version=_version(), lifespan=lifespan,
                  description="Detect and trace AI-generated video; protect images against image-to-video models.")
    app.state.service = service
    app.add_middleware(BodyLimit, limit=settings.max_upload_bytes)
    app.add_middleware(BearerAuth, token=settings.token)  # outside BodyLimit: no body without the token
    app.add_middleware(MetricsMiddleware, metrics=service.metrics)
    _add_error_handlers(app)
    _add_open_routes(app, service)
    app.include_router(_api_router(service, settings))
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("mmvgm")
    except PackageNotFoundError:
        return "0"


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(MMVGMError)
    async def client_error(request: Request, exc: MMVGMError) -> JSONResponse:
        return JSONResponse({"detail": " ".join(str(exc).split())}, status_code=422)

    @app.exception_handler(MalformedForm)
    async def malformed(request: Request, exc: MalformedForm) -> JSONResponse:
        return JSONResponse({"detail": exc.message}, status_code=400)

    @app.exception_handler(ClientGone)
    async def client_gone(request: Request, exc: ClientGone) -> Response:
        return Response(status_code=400)  # never read: the client has gone

    @app.exception_handler(ServiceError)
    async def service_error(request: Request, exc: ServiceError) -> JSONResponse:
        return JSONResponse({"detail": exc.detail}, status_code=exc.status)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        incident = uuid.uuid4().hex[:12]
        log.error("unexpected error %s on %s %s", incident, request.method, request.url.path, exc_info=exc)
        return JSONResponse({"detail": f"internal error (logged as {incident})"}, status_code=500)


def _add_open_routes(app: FastAPI, service: Service) -> None:
    @app.get("/healthz", response_model=schemas.Health, tags=["service"])
    def healthz() -> dict:
        """The process is up (no auth)."""
        return {"status": "ok"}

    @app.get("/readyz", response_model=schemas.Health, responses={503: {"model": schemas.Error}}, tags=["service"])
    def readyz() -> Any:
        """200 once the model is loaded, 503 before (or when loading failed)."""
        reason = service.not_ready()
        if reason is None:
            return {"status": "ready"}
        return JSONResponse({"detail": reason}, status_code=503)

    @app.get("/metrics", response_class=PlainTextResponse, tags=["service"])
    def metrics() -> Response:
        """Prometheus text: requests, latency, queue depth, batch sizes."""
        return Response(service.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")


ERRORS = {status: {"model": schemas.Error} for status in (400, 401, 408, 413, 422, 503, 504)}


def _documented_auth(settings: ServeSettings) -> list:
    """Declares the bearer scheme in ``/openapi.json`` when a token is set; the check itself is
    ``BearerAuth``, which runs before the body is read."""
    if not settings.token:
        return []
    from fastapi.security import HTTPBearer

    return [Depends(HTTPBearer(auto_error=False, description="The server's token (--token-file or $MMVGM_TOKEN)"))]


def _api_router(service: Service, settings: ServeSettings) -> APIRouter:
    router = APIRouter(prefix="/v1", dependencies=_documented_auth(settings), responses=ERRORS)

    @router.post("/trace", response_model=None, responses={200: {"model": schemas.TraceResult}}, tags=["detect"],
                 openapi_extra=schemas.TRACE_FORM)
    async def trace(request: Request,
                    windows: int = Query(1, ge=1, le=64, description="Score N clips spread over the video"),
                    explain: bool = Query(False, description="Add the saliency PNG (base64) as explanation_png")
                    ) -> Any:
        """What ``mmvgm trace --json`` prints for the file: the verdict, P(fake), the sources."""
        service.require_ready()
        folder = request_folder(service.tmp)
        try:
            upload = (await service.form(request, folder)).file("file", "a video")
            path = await run_in_threadpool(_sniffed_video, upload.path)
            if windows == 1 and not explain:
                verdict = await service.wait(service.worker.score(str(path), path.name), "scoring")
            else:
                verdict = await service.wait(service.worker.call(
                    lambda: _traced(service.predictor, path, windows, explain)), "scoring")
            return _trace_answer(verdict, windows)
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    @router.post("/jobs", status_code=202, response_model=schemas.JobCreated, tags=["scan"],
                 openapi_extra=schemas.JOB_FORM)
    async def create_job(request: Request) -> Any:
        """Start a scan job over uploaded files and/or server-side paths."""
        service.require_ready()
        folder = service.state_dir / "uploads" / uuid.uuid4().hex  # uploads must outlive a crash
        try:
            form = await service.form(request, folder)
            files, kept = await run_in_threadpool(_job_inputs, service, form, folder)
            job = await run_in_threadpool(service.store.create, files, kept)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        service.runner.wake.set()
        return {"job": job}

    @router.get("/jobs/{job}", response_model=schemas.JobStatus, responses={404: {"model": schemas.Error}},
                tags=["scan"])
    def job_status(job: str) -> Any:
        """queued, running or done, with counts."""
        status = service.store.status(job) if service.store else None
        if status is None:
            return JSONResponse({"detail": f"no job {job}"}, status_code=404)
        return status

    @router.get("/jobs/{job}/results", response_class=StreamingResponse,
                responses={200: {"content": {"application/x-ndjson": {}}}, 404: {"model": schemas.Error}},
                tags=["scan"])
    def job_results(job: str) -> Any:
        """The results so far as JSONL: one line per file, the lines of ``mmvgm scan``."""
        if service.store is None or service.store.status(job) is None:
            return JSONResponse({"detail": f"no job {job}"}, status_code=404)
        return StreamingResponse(service.store.results(job), media_type="application/x-ndjson")

    @router.post("/protect", responses={200: {"content": {"image/png": {}}, "model": schemas.ProtectResult,
                                              "headers": {"X-MMVGM-Report": {
                                                  "description": "The quality report (JSON) of the PNG",
                                                  "schema": {"type": "string"}}}},
                                        501: {"model": schemas.Error}},
                 tags=["protect"], openapi_extra=schemas.protect_form(settings.max_protect_steps))
    async def protect(request: Request, format: str = Query("png", pattern="^(png|json)$")) -> Any:
        """The protected PNG (the pixels ``mmvgm protect`` writes for the same seed), its quality
        report in ``X-MMVGM-Report``; ``?format=json``: the report and the PNG in base64."""
        service.require_ready()
        if service.encoder is None:
            raise ServiceError(501, "this server protects no images: start it with --protect-encoder NAME "
                                    "--model-path DIR")
        folder = request_folder(service.tmp)
        try:
            form = await service.form(request, folder / "in")
            image = form.file("image", "the image to protect")
            target = form.file("target", "directed mode: the image to pull toward", required=False)
            options = {"eps": form.value("eps"), "seed": _int_field(form, "seed", 0, 2**32 - 1),
                       "steps": _int_field(form, "steps", 1, settings.max_protect_steps)}
            cancel = threading.Event()
            report, png = await service.wait(_in_thread(_protected, service, folder, image, target, options, cancel),
                                             "protecting", on_timeout=cancel.set)
            if format == "json":
                return {"report": report, "png": base64.b64encode(png).decode()}
            return Response(png, media_type="image/png", headers={"X-MMVGM-Report": json.dumps(report)})
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    return router


def _int_field(form: StreamedForm, name: str, low: int, high: int) -> Optional[int]:
    """The integer in text field ``name`` (None when absent), from ``low`` to ``high``."""
    from mmvgm.errors import InputError

    text = form.value(name)
    if text is None or not text.strip():
        return None
    value = text.strip()
    if not re.fullmatch(r"-?[0-9]{1,20}", value) or not low <= int(value) <= high:
        raise InputError(f"{name} must be an integer from {low} to {high} (got {text[:40]!r})")
    return int(value)


def _sniffed_video(path: Path) -> Path:
    """``path``, unless its first bytes say it is no video (the CLI's message, the client's name)."""
    from mmvgm.io.paths import refuse_non_video

    try:
        refuse_non_video(path)
    except MMVGMError as exc:  # named as the client named it, not by the server's folder
        raise type(exc)(exc.message, path.name) from None
    return path


def _traced(predictor: Any, path: Path, windows: int, explain: bool) -> Any:
    """``mmvgm trace``'s work for one file, on the model thread: windows, then the saliency PNG
    of the most suspicious window (written beside the upload)."""
    from dataclasses import replace

    from mmvgm.predict.explain import explain_verdict

    try:
        verdict = predictor.predict(path, windows=windows)
    except MMVGMError as exc:
        return _failed(path.name, exc)
    if explain:
        verdict.explanation = explain_verdict(predictor, path, path.with_suffix(".saliency.png"), verdict)
    return replace(verdict, path=path.name)


def _failed(name: str, exc: MMVGMError) -> Any:
    from mmvgm.predict.verdict import Verdict

    return Verdict.failed(name, exc.message)


def _trace_answer(verdict: Any, windows: int) -> JSONResponse:
    from mmvgm.predict.verdict import trace_record

    if not verdict.ok:
        return JSONResponse({"detail": f"{verdict.path}: {verdict.error}"}, status_code=422)
    record = trace_record(verdict, windows)
    if verdict.explanation:
        record.pop("explanation")
        record["explanation_png"] = base64.b64encode(Path(verdict.explanation).read_bytes()).decode()
    return JSONResponse(record)


def _job_inputs(service: Service, form: StreamedForm, folder: Path) -> tuple:
    """``([(name, location)], the upload folder to keep or None)``: server-side paths checked
    against ``--allow-root``, then the uploads (already in ``folder``, under the state folder)."""
    from mmvgm.errors import InputError

    uploads, paths = form.files.get("file", []), form.fields.get("path", [])
    if not uploads and not paths:
        raise InputError("a job needs at least one 'file' upload or 'path' field")
    files = _allowed_paths(service.settings, paths)
    files += [(upload.name, str(upload.path)) for upload in uploads]
    if len(files) > service.settings.max_files_per_job:
        raise LimitError(f"a job may hold at most {service.settings.max_files_per_job} files (got {len(files)})")
    if not uploads:
        shutil.rmtree(folder, ignore_errors=True)
    return files, str(folder) if uploads else None


def _allowed_paths(settings: ServeSettings, paths: List[str]) -> List[tuple]:
    """``(name, location)`` of the videos of each server-side path (a folder or manifest is
    listed as ``scan`` lists it, and named so); each video, and each frame of a folder of
    frames, must lie under an ``--allow-root`` once links are resolved, and is read from its
    resolved location (a link changed after this check does not lead out)."""
    from mmvgm.errors import InputError
    from mmvgm.io.discovery import list_inputs

    if paths and not settings.allow_roots:
        raise InputError("this server takes no server-side paths (start it with --allow-root DIR)")
    roots = [Path(r).resolve() for r in settings.allow_roots]
    out: List[tuple] = []
    for given in paths:
        try:
            real = Path(given).expanduser().resolve()
        except (RuntimeError, ValueError, OSError) as exc:  # "~nobody/x", a NUL byte
            raise InputError(f"{given!r}: not a usable path ({exc})") from None
        if not any(real == root or root in real.parents for root in roots):
            raise InputError(f"{given}: not under an allowed root (--allow-root)")
        inputs, _ = list_inputs(real)
        for item in inputs:
            location = Path(item).resolve()
            inside = [location] + (sorted(location.iterdir()) if location.is_dir() else [])
            if not all(any(root in p.resolve().parents for root in roots) for p in inside):
                raise InputError(f"{item}: not under an allowed root (--allow-root)")
            out.append((item, str(location)))
    return out


def _in_thread(fn: Any, *args: Any) -> Any:
    """Run ``fn(*args)`` on a new daemon thread; returns a concurrent future."""
    from concurrent.futures import Future

    future: Future = Future()

    def run() -> None:
        if not future.set_running_or_notify_cancel():  # its request gave up before it started
            return
        try:
            future.set_result(fn(*args))
        except BaseException as exc:  # noqa: BLE001 - handed to the request
            future.set_exception(exc)
    threading.Thread(target=run, name="mmvgm-protect", daemon=True).start()
    return future


class Cancelled(Exception):
    """A protection stopped because its request timed out."""


def _protected(service: Service, folder: Path, image: UploadedFile, target: Optional[UploadedFile],
               options: Dict[str, Any], cancel: threading.Event) -> tuple:
    """``mmvgm protect``'s code on the upload: ``(report, PNG bytes)``; one protection at a time,
    stopped at its next step once ``cancel`` is set (its request timed out)."""
    from mmvgm.attacks.files import protect_files

    def on_image(path: Path, steps: int):
        def on_step(step: int, loss: float) -> None:
            if cancel.is_set():
                raise Cancelled()
        return on_step

    src, tgt = image.path, target.path if target is not None else None
    with service.protect_lock:
        try:
            if cancel.is_set():  # timed out while waiting for another protection
                raise Cancelled()
            report = next(protect_files([src], service.encoder, target=tgt, out=folder / "out", lpips=service.lpips,
                                        on_image=on_image, config=service.settings.protect_config, **options))
        except MMVGMError as exc:  # a bad target: named as the client named it, not by the request folder
            if tgt is None or exc.path != str(tgt):
                raise
            raise type(exc)(exc.message, tgt.name) from None
    if "error" in report:
        raise _input_error(f"{image.name}: {report['error']}")
    png = Path(report.pop("output")).read_bytes()
    report["path"] = src.name
    if tgt is not None:
        report["target"] = tgt.name
    return report, png


def _input_error(message: str) -> MMVGMError:
    from mmvgm.errors import InputError

    return InputError(message)
