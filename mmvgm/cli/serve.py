"""``mmvgm serve``: the HTTP service and web page (over ``mmvgm.serve``)."""
from __future__ import annotations

from typing import Optional, Tuple

import click

from mmvgm.cli.options import precision_option


@click.command(name="serve")
@click.option("--checkpoint", "-c", type=click.Path(), envvar="MMVGM_CHECKPOINT", show_envvar=True,
              help="Checkpoint directory (from `mmvgm train` or `mmvgm demo`) or hub id (org/name[@revision]).")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; anything but loopback needs a token.")
@click.option("--port", "-p", type=click.IntRange(0, 65535), default=8000, show_default=True)
@click.option("--token-file", type=click.Path(dir_okay=False), default=None,
              help="File holding the bearer token every /v1 request must send (also $MMVGM_TOKEN).")
@click.option("--max-upload-mb", type=click.FloatRange(min=0, min_open=True), default=512, show_default=True,
              help="Largest request body; bigger ones get 413 before they are read.")
@click.option("--state-dir", type=click.Path(file_okay=False), default="mmvgm-state", show_default=True,
              help="Jobs database (SQLite) and uploaded job files (requests use a local temporary folder).")
@click.option("--database-url", envvar="MMVGM_DATABASE_URL", show_envvar=True, default=None,
              help="Jobs database for several replicas, e.g. postgresql+psycopg://user@host/db "
                   "[default: SQLite in --state-dir].")
@click.option("--allow-root", "allow_roots", multiple=True, type=click.Path(file_okay=False),
              help="Folder whose files /v1/jobs may name by server-side path (repeatable) [default: none].")
@click.option("--protect-encoder", default=None,
              help="Enable /v1/protect with this encoder: svd | clip | vae | timm:NAME | auto.")
@click.option("--model-path", "-m", type=click.Path(), default=None,
              help="Weights of the protect encoder: a folder or hub id (as for `mmvgm protect --model-path`).")
@click.option("--protect-config", default="default", show_default=True,
              help="Protect config name (configs/protect/) or YAML path, as for `mmvgm protect --config`.")
@click.option("--max-protect-steps", type=click.IntRange(min=1), default=1000, show_default=True,
              help="Most attack steps a /v1/protect request may ask for.")
@click.option("--lpips-weights", type=click.Path(dir_okay=False), default=None,
              help="LPIPS backbone for protect reports: a file or hub id (as for `mmvgm protect`).")
@click.option("--workers", "-j", type=click.IntRange(min=0), default=None,
              help="Decoding processes of the predictor (0: decode in the server's decode thread) [default: as "
                   "for scan, the usable cores less 2, from 2 to 16].")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="Torch compute threads (also $MMVGM_THREADS) [default: on CPU, every core less one "
                   "per decoding worker].")
@click.option("--max-batch", type=click.IntRange(min=1), default=8, show_default=True,
              help="Most files scored in one model batch (concurrent requests are batched together).")
@click.option("--max-wait-ms", type=click.FloatRange(min=0), default=10, show_default=True,
              help="How long the first file of a batch waits for others.")
@click.option("--timeout", "timeout_s", type=click.FloatRange(min=0, min_open=True), default=120,
              show_default=True, help="Seconds a request may take before it gets 504.")
@click.option("--job-lease-s", type=click.FloatRange(min=0, min_open=True), default=30, show_default=True,
              help="A running job whose server stops renewing it for this long is taken over "
                   "(after a crash, by the restarted server or another replica).")
@click.option("--max-pixels", type=click.IntRange(min=1), default=None,
              help="Pixel budget per frame [default: the CLI's, 8K].")
@click.option("--max-frames", type=click.IntRange(min=1), default=None,
              help="Frame budget per video [default: the CLI's].")
@click.option("--device", default="auto", show_default=True, help="auto | cpu | cuda | cuda:N")
@click.option("--log-level", type=click.Choice(["critical", "error", "warning", "info", "debug"]),
              default="info", show_default=True)
@precision_option
def command(checkpoint: Optional[str], host: str, port: int, token_file: Optional[str], max_upload_mb: float,
            state_dir: str, database_url: Optional[str], allow_roots: Tuple[str, ...], protect_encoder: Optional[str],
            model_path: Optional[str], protect_config: str, max_protect_steps: int, lpips_weights: Optional[str],
            workers: Optional[int], threads: Optional[int], max_batch: int, max_wait_ms: float, timeout_s: float,
            job_lease_s: float, max_pixels: Optional[int], max_frames: Optional[int], device: str, log_level: str,
            precision: str) -> None:
    """Serve detection, tracing, scan jobs and protection over HTTP, with a web page at /.

    \b
    Endpoints: GET /healthz, /readyz, /metrics, /openapi.json (the API, also at /docs);
    POST /v1/trace (a video -> what `mmvgm trace --json` prints), POST /v1/jobs (scan
    jobs, kept in a database: they resume after a crash), GET /v1/jobs/ID[/results],
    POST /v1/protect (an image -> the protected PNG, with --protect-encoder).
    Listening beyond loopback needs a token (--token-file or $MMVGM_TOKEN); every /v1
    request then sends `Authorization: Bearer <token>`.

    \b
    Examples:
      mmvgm serve --checkpoint ckpt/
      curl -F file=@clip.mp4 http://127.0.0.1:8000/v1/trace
      MMVGM_TOKEN=s3cret mmvgm serve -c ckpt/ --host 0.0.0.0 --workers 4
      mmvgm serve -c ckpt/ --protect-encoder svd --model-path ~/weights/svd
    """
    from pathlib import Path

    from mmvgm.predict.predictor import resolve_checkpoint
    from mmvgm.serve.settings import ServeSettings, read_token

    settings = ServeSettings(
        checkpoint=str(resolve_checkpoint(checkpoint)), host=host, port=port, token=read_token(token_file),
        max_upload_mb=max_upload_mb, state_dir=Path(state_dir), database_url=database_url,
        allow_roots=[Path(r) for r in allow_roots], protect_encoder=protect_encoder, protect_model_path=model_path,
        protect_config=protect_config, max_protect_steps=max_protect_steps,
        lpips_weights=lpips_weights, workers=workers, threads=threads, device=None if device == "auto" else device,
        precision=precision, max_batch=max_batch, max_wait_ms=max_wait_ms, request_timeout_s=timeout_s, job_lease_s=job_lease_s,
        max_pixels=max_pixels, max_frames=max_frames).check()
    _run(settings, log_level)


def _run(settings, log_level: str) -> None:
    from mmvgm.errors import DependencyError

    try:
        import uvicorn

        from mmvgm.serve.app import create_app
    except ImportError as exc:
        raise DependencyError(f"mmvgm serve needs {exc.name}: pip install 'mmvgm[serve]'") from None
    import logging

    # Our log lines (readiness, incidents with their tracebacks) beside uvicorn's own.
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    click.echo(f"mmvgm: serving on http://{settings.host}:{settings.port}/ (page at /, API at /docs)", err=True)
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level=log_level,
                timeout_graceful_shutdown=10)
