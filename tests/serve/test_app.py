"""Every endpoint through FastAPI's TestClient: answers equal to the CLI's, and the 4xx paths."""
from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from mmvgm.cli import cli


def cli_trace(serve_data, video: Path, *args: str) -> dict:
    """What ``mmvgm trace VIDEO --json`` prints, run from the video's folder (so ``path`` is its name)."""
    import os

    here = os.getcwd()
    os.chdir(video.parent)
    try:
        result = CliRunner().invoke(cli, ["trace", video.name, "-c", str(serve_data["checkpoint"]), "--json", *args])
    finally:
        os.chdir(here)
    return json.loads(result.stdout.strip().splitlines()[0])


def assert_same_record(served, printed, tol: float = 1e-6) -> None:
    """Equal records: the same keys and strings, numbers within ``tol`` (batching may move the
    last float bit, the records round to 6 decimals)."""
    if isinstance(printed, dict):
        assert isinstance(served, dict) and served.keys() == printed.keys(), (served, printed)
        for key in printed:
            assert_same_record(served[key], printed[key], tol)
    elif isinstance(printed, list):
        assert isinstance(served, list) and len(served) == len(printed)
        for a, b in zip(served, printed):
            assert_same_record(a, b, tol)
    elif isinstance(printed, float):
        assert math.isclose(served, printed, abs_tol=tol), (served, printed)
    else:
        assert served == printed


def upload(path: Path, name: str = None) -> dict:
    return {"file": (name or path.name, path.read_bytes(), "application/octet-stream")}


def test_health_and_readiness(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").status_code == 200


def test_not_ready_before_the_model_loads(serve_data, tmp_path):
    from fastapi.testclient import TestClient

    from mmvgm.serve import ServeSettings, create_app

    app = create_app(ServeSettings(checkpoint=str(serve_data["checkpoint"]), state_dir=tmp_path / "s"))
    client = TestClient(app)  # not entered: the lifespan (which loads the model) has not run
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 503
    answer = client.post("/v1/trace", files=upload(serve_data["videos"][0]))
    assert answer.status_code == 503 and "loading" in answer.json()["detail"]


def test_a_missing_checkpoint_is_reported_by_readyz(tmp_path):
    from fastapi.testclient import TestClient

    from mmvgm.serve import ServeSettings, create_app

    with TestClient(create_app(ServeSettings(checkpoint=str(tmp_path / "nope"), state_dir=tmp_path / "s"))) as c:
        deadline = time.monotonic() + 30
        while "failed" not in c.get("/readyz").json()["detail"] and time.monotonic() < deadline:
            time.sleep(0.05)
        answer = c.get("/readyz")
        assert answer.status_code == 503 and "checkpoint directory not found" in answer.json()["detail"]
        assert c.post("/v1/trace", files=upload(tmp_path / "s" / "jobs.sqlite")).status_code == 503


def test_trace_returns_what_the_cli_prints(client, serve_data):
    for video in serve_data["videos"][:3]:
        served = client.post("/v1/trace", files=upload(video))
        assert served.status_code == 200, served.text
        assert_same_record(served.json(), cli_trace(serve_data, video))


def test_trace_with_windows_returns_what_the_cli_prints(client, serve_data):
    video = serve_data["videos"][0]
    served = client.post("/v1/trace?windows=3", files=upload(video)).json()
    assert_same_record(served, cli_trace(serve_data, video, "--windows", "3"))
    assert len(served["windows"]) == 3
    capped = client.post("/v1/trace?windows=50", files=upload(video)).json()  # 10 frames: 3 windows fit
    printed = cli_trace(serve_data, video, "--windows", "50")
    assert_same_record(capped, printed)
    assert capped["windows_requested"] == 50


def test_trace_explain_adds_the_saliency_png(client, serve_data):
    import base64

    served = client.post("/v1/trace?windows=2&explain=true", files=upload(serve_data["videos"][1])).json()
    png = base64.b64decode(served["explanation_png"])
    assert png.startswith(b"\x89PNG") and "explanation" not in served
    assert_same_record({k: v for k, v in served.items() if k != "explanation_png"},
                       cli_trace(serve_data, serve_data["videos"][1], "--windows", "2"))


def test_a_text_file_named_mp4_gets_422_with_the_cli_message(client, serve_data):
    text = serve_data["text"]
    result = CliRunner().invoke(cli, ["trace", str(text), "-c", str(serve_data["checkpoint"])])
    cli_message = result.stderr.splitlines()[0].removeprefix("mmvgm: error: ").replace(str(text), text.name)
    answer = client.post("/v1/trace", files=upload(text))
    assert answer.status_code == 422
    assert answer.json() == {"detail": cli_message}
    assert cli_message == "notes.mp4: not a video: the file contains text"


def test_bad_queries_and_missing_fields_are_422(client, serve_data):
    assert client.post("/v1/trace", files=upload(serve_data["videos"][0]), params={"windows": 0}).status_code == 422
    assert client.post("/v1/trace", params={"windows": "x"}).status_code == 422
    for path in ("/v1/trace", "/v1/jobs"):  # no multipart body: 400, saying what to send
        answer = client.post(path)
        assert answer.status_code == 400 and "multipart/form-data" in answer.json()["detail"]
    missing = client.post("/v1/trace", files={"other": ("a.mp4", b"x")})
    assert missing.status_code == 422 and missing.json()["detail"] == "the form needs a 'file' file (a video)"
    for body in (b"--b\r\nnonsense", b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.mp4"\r\n\r\nab'):
        broken = client.post("/v1/trace", content=body, headers={"content-type": "multipart/form-data; boundary=b"})
        assert broken.status_code == 400 and "closing boundary" in broken.json()["detail"]
    assert client.get("/v1/jobs/nope").status_code == 404
    assert client.get("/v1/jobs/nope/results").status_code == 404


def test_an_image_sent_as_a_video_is_422(client, tmp_path):
    from PIL import Image

    Image.new("RGB", (8, 8)).save(tmp_path / "photo.png")
    answer = client.post("/v1/trace", files=upload(tmp_path / "photo.png"))
    assert answer.status_code == 422 and "photo.png: unsupported file type" in answer.json()["detail"]


def test_a_body_over_the_limit_is_413_before_it_is_read(make_client, serve_data):
    client = make_client(max_upload_mb=0.01)  # 10 KB; the videos are a few KB
    big = b"\0" * 20_000
    answer = client.post("/v1/trace", files={"file": ("big.mp4", big)})
    assert answer.status_code == 413 and "limit is 0.01 MB" in answer.json()["detail"]
    assert client.post("/v1/trace", files=upload(serve_data["videos"][0])).status_code == 200


def test_a_stream_that_lies_about_its_length_is_413(make_client, serve_data):
    client = make_client(max_upload_mb=0.01)
    body = b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x.mp4\"\r\n\r\n" + b"\0" * 50_000 \
        + b"\r\n--b--\r\n"
    headers = {"content-type": "multipart/form-data; boundary=b"}

    def chunks():  # no Content-Length at all: chunked
        for i in range(0, len(body), 4096):
            yield body[i:i + 4096]

    assert client.post("/v1/trace", content=chunks(), headers=headers).status_code == 413
    lying = {**headers, "content-length": "1000"}
    assert client.post("/v1/trace", content=body, headers=lying).status_code == 413
    assert client.get("/healthz").status_code == 200


def test_pixel_and_frame_budgets_apply_to_requests(make_client, serve_data):
    client = make_client(max_pixels=100)
    answer = client.post("/v1/trace", files=upload(serve_data["videos"][0]))
    assert answer.status_code == 422 and "exceeds the pixel budget" in answer.json()["detail"]
    windows = client.post("/v1/trace?windows=2", files=upload(serve_data["videos"][0]))
    assert windows.status_code == 422 and "pixel budget" in windows.json()["detail"]
    frames = make_client(max_frames=5).post("/v1/trace", files=upload(serve_data["videos"][0]))
    assert frames.status_code == 422 and "frame budget" in frames.json()["detail"]


def test_the_process_wide_budgets_stay_as_they_are(serve_data, tmp_path):
    from fastapi.testclient import TestClient

    from mmvgm.io.limits import default_limits
    from mmvgm.serve import ServeSettings, create_app
    from tests.serve.conftest import wait_ready

    before = default_limits()
    settings = ServeSettings(checkpoint=str(serve_data["checkpoint"]), state_dir=tmp_path / "s", max_pixels=100)
    with TestClient(create_app(settings)) as client:
        wait_ready(client)
        assert client.app.state.service.predictor.limits["max_pixels"] == 100
        assert default_limits() == before
    assert default_limits() == before


def test_a_request_that_takes_too_long_is_504(make_client, serve_data):
    client = make_client(request_timeout_s=0.2)
    service = client.app.state.service
    real = service.predictor.score_batch

    def slow(*args, **kwargs):
        time.sleep(1.0)
        return real(*args, **kwargs)

    service.predictor.score_batch = slow
    answer = client.post("/v1/trace", files=upload(serve_data["videos"][0]))
    assert answer.status_code == 504 and "timeout of 0.2 s" in answer.json()["detail"]
    service.predictor.score_batch = real
    time.sleep(1.0)
    assert client.post("/v1/trace", files=upload(serve_data["videos"][0])).status_code == 200


def test_an_unexpected_error_is_a_short_500_logged_with_its_traceback(make_client, serve_data, caplog):
    client = make_client(raise_server_exceptions=False)
    service = client.app.state.service

    def boom(*args, **kwargs):
        raise RuntimeError("secret internals")

    service.predictor.score_batch = boom
    with caplog.at_level(logging.ERROR, logger="mmvgm.serve"):
        answer = client.post("/v1/trace", files=upload(serve_data["videos"][0]))
    assert answer.status_code == 500
    assert answer.json()["detail"].startswith("internal error (logged as ") and "secret" not in answer.text
    assert any(r.exc_info and "secret internals" in str(r.exc_info[1]) for r in caplog.records)
    assert client.get("/healthz").status_code == 200


def test_temporary_files_are_deleted_after_every_request(client, serve_data, tmp_path):
    for path in (serve_data["videos"][0], serve_data["text"]):
        client.post("/v1/trace", files=upload(path))
        client.post("/v1/trace?explain=true", files=upload(path))
    scratch = Path(client.app.state.service.tmp)
    assert scratch.is_dir() and list(scratch.iterdir()) == []


def test_a_token_guards_every_v1_endpoint(make_client, serve_data):
    client = make_client(token="s3cret")
    assert client.get("/healthz").status_code == 200
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}, {"Authorization": "Basic s3cret"}):
        assert client.post("/v1/trace", files=upload(serve_data["videos"][0]), headers=headers).status_code == 401
        assert client.get("/v1/jobs/x", headers=headers).status_code == 401
        assert client.post("/v1/protect", headers=headers).status_code == 401
    good = {"Authorization": "Bearer s3cret"}
    assert client.post("/v1/trace", files=upload(serve_data["videos"][0]), headers=good).status_code == 200
    assert client.get("/v1/jobs/x", headers=good).status_code == 404


def test_a_public_bind_needs_a_token():
    from mmvgm.errors import InputError
    from mmvgm.serve import ServeSettings

    with pytest.raises(InputError, match="without a token"):
        ServeSettings(host="0.0.0.0").check()
    ServeSettings(host="0.0.0.0", token="t").check()
    for host in ("127.0.0.1", "::1", "localhost", "127.0.0.5"):
        ServeSettings(host=host).check()


def wait_done(client, job: str, timeout: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = client.get(f"/v1/jobs/{job}").json()
        if status["status"] == "done":
            return status
        time.sleep(0.05)
    raise AssertionError(f"job {job} did not finish: {status}")


def test_a_job_gives_the_lines_of_mmvgm_scan(client, serve_data, tmp_path):
    videos = serve_data["videos"]
    files = [("file", (v.name, v.read_bytes())) for v in videos] + [("file", ("notes.mp4", serve_data["text"].read_bytes()))]
    created = client.post("/v1/jobs", files=files)
    assert created.status_code == 202
    status = wait_done(client, created.json()["job"])
    assert status == {"job": created.json()["job"], "status": "done", "total": 7, "done": 7, "errors": 1}
    lines = client.get(f"/v1/jobs/{status['job']}/results").text.splitlines()
    # the same files scanned by the CLI from a folder holding copies under the same names
    folder = tmp_path / "scan"
    folder.mkdir()
    for v in videos:
        (folder / v.name).write_bytes(v.read_bytes())
    (folder / "notes.mp4").write_bytes(serve_data["text"].read_bytes())
    out = tmp_path / "r.jsonl"
    result = CliRunner().invoke(cli, ["scan", str(folder), "-c", str(serve_data["checkpoint"]), "--out", str(out),
                                      "--workers", "0", "-q"])
    assert result.exit_code == 0, result.output
    printed = {Path(r["path"]).name: r for r in map(json.loads, out.read_text().splitlines())}
    served = [json.loads(line) for line in lines]
    assert [r["path"] for r in served] == [v.name for v in videos] + ["notes.mp4"]
    for record in served:
        assert_same_record(record, {**printed[record["path"]], "path": record["path"]})
    uploads = Path(client.app.state.service.state_dir) / "uploads"
    assert not uploads.exists() or list(uploads.iterdir()) == []  # a finished job's uploads are removed


def test_server_side_paths_only_under_an_allowed_root(make_client, serve_data, tmp_path):
    videos = serve_data["videos"]
    closed = make_client()
    answer = closed.post("/v1/jobs", data={"path": str(videos[0])})
    assert answer.status_code == 422 and "--allow-root" in answer.json()["detail"]
    client = make_client(allow_roots=[videos[0].parent])
    job = client.post("/v1/jobs", data={"path": [str(videos[0].parent)]}).json()["job"]
    assert wait_done(client, job)["total"] == len(videos)
    lines = [json.loads(x) for x in client.get(f"/v1/jobs/{job}/results").text.splitlines()]
    assert [r["path"] for r in lines] == [str(v) for v in videos]
    outside = tmp_path / "elsewhere.mp4"
    outside.write_bytes(videos[0].read_bytes())
    for path in (str(outside), str(videos[0].parent / ".." / "notes.mp4")):
        answer = client.post("/v1/jobs", data={"path": path})
        assert answer.status_code == 422 and "not under an allowed root" in answer.json()["detail"]
    link = videos[0].parent / "link.mp4"
    link.symlink_to(outside)
    try:
        answer = client.post("/v1/jobs", data={"path": str(link)})
        assert answer.status_code == 422 and "not under an allowed root" in answer.json()["detail"]
    finally:
        link.unlink()
    # a folder of frames inside the root whose frames are links to images outside it
    from PIL import Image

    (tmp_path / "out").mkdir()
    frames = tmp_path / "root" / "clip"
    frames.mkdir(parents=True)
    for i in range(3):
        Image.new("RGB", (8, 8)).save(tmp_path / "out" / f"{i}.png")
        (frames / f"{i}.png").symlink_to(tmp_path / "out" / f"{i}.png")
    framed = make_client(allow_roots=[frames.parent])
    for given in (frames, frames.parent):
        answer = framed.post("/v1/jobs", data={"path": str(given)})
        assert answer.status_code == 422, answer.text


def test_concurrent_requests_share_batches(make_client, serve_data):
    from concurrent.futures import ThreadPoolExecutor

    client = make_client(max_batch=4, max_wait_ms=200)
    videos = serve_data["videos"][:4]
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda v: client.post("/v1/trace", files=upload(v)), videos))
    assert all(a.status_code == 200 for a in answers)
    assert [a.json()["path"] for a in answers] == [v.name for v in videos]
    metrics = client.get("/metrics").text
    count = float(next(line.split()[-1] for line in metrics.splitlines() if line.startswith("mmvgm_batch_size_count")))
    assert count < 4  # at least two of the four shared a batch


def test_metrics_count_requests_by_route_and_status(client, serve_data):
    client.post("/v1/trace", files=upload(serve_data["videos"][0]))
    client.post("/v1/trace", files=upload(serve_data["text"]))
    client.get("/v1/jobs/abc")
    text = client.get("/metrics").text
    assert 'mmvgm_requests_total{endpoint="/v1/trace",method="POST",status="200"} 1.0' in text
    assert 'mmvgm_requests_total{endpoint="/v1/trace",method="POST",status="422"} 1.0' in text
    assert 'endpoint="/v1/jobs/{job}",method="GET",status="404"' in text  # the template, not the id
    for name in ("mmvgm_request_seconds_bucket", "mmvgm_queue_depth", "mmvgm_batch_size_bucket"):
        assert name in text


def test_openapi_describes_the_results(client):
    spec = client.get("/openapi.json").json()
    assert {"/v1/trace", "/v1/jobs", "/v1/jobs/{job}", "/v1/jobs/{job}/results", "/v1/protect",
            "/healthz", "/readyz", "/metrics"} <= set(spec["paths"])
    assert {"TraceResult", "JobStatus", "JobCreated", "ProtectResult", "Error"} <= set(spec["components"]["schemas"])


def test_the_page_is_served(client):
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]


def test_without_the_token_no_body_is_read(make_client, serve_data):
    """The token is checked before the upload limit and before the body: 401, not 413."""
    client = make_client(token="s3cret", max_upload_mb=0.01)
    answer = client.post("/v1/trace", files={"file": ("big.mp4", b"\0" * 50_000)})
    assert answer.status_code == 401 and answer.headers["www-authenticate"] == "Bearer"
    good = client.post("/v1/trace", files={"file": ("big.mp4", b"\0" * 50_000)}, headers={"Authorization": "Bearer s3cret"})
    assert good.status_code == 413
    assert 'endpoint="unmatched",method="POST",status="401"' in client.get("/metrics").text


def test_the_model_leaves_a_core_to_each_decoding_worker_on_cpu(monkeypatch):
    from mmvgm.runtime.threads import threads_leaving_worker_cores
    from mmvgm.serve import ServeSettings
    from mmvgm.serve.app import serving_threads

    monkeypatch.delenv("MMVGM_THREADS", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert serving_threads(ServeSettings(workers=2, device="cpu")) == (2, threads_leaving_worker_cores(2))
    assert serving_threads(ServeSettings(workers=0, device="cpu")) == (0, None)  # nothing to leave cores to
    assert serving_threads(ServeSettings(workers=2, device="cpu", threads=3)) == (2, 3)
    monkeypatch.setenv("MMVGM_THREADS", "1")
    assert serving_threads(ServeSettings(workers=2, device="cpu")) == (2, 1)
    workers, _ = serving_threads(ServeSettings(device="cpu"))
    assert workers >= 2  # scan's default


def test_an_empty_file_input_counts_as_no_file(client, serve_data):
    """What a browser's HTML form sends for a file input left empty: ``filename=""``, no bytes."""
    video = serve_data["videos"][0]
    empty = b'--b\r\nContent-Disposition: form-data; name="file"; filename=""\r\n\r\n\r\n'
    real = (b'--b\r\nContent-Disposition: form-data; name="file"; filename="' + video.name.encode() + b'"\r\n\r\n'
            + video.read_bytes() + b"\r\n--b--\r\n")
    headers = {"content-type": "multipart/form-data; boundary=b"}
    answer = client.post("/v1/trace", content=empty + real, headers=headers)
    assert answer.status_code == 200 and answer.json()["path"] == video.name  # not "send one 'file'"
    alone = client.post("/v1/trace", content=empty + b"--b--\r\n", headers=headers)
    assert alone.json() == {"detail": "the form needs a 'file' file (a video)"}


def test_a_field_name_cannot_put_a_file_outside_the_request(client, serve_data, tmp_path):
    """A file part named by its field when its file name cleans to nothing: the field's name
    is cleaned too, so ``../`` in it never reaches a path."""
    escape = tmp_path / "PWNED"
    field = "../" * 12 + str(escape).lstrip("/")
    body = (f'--b\r\nContent-Disposition: form-data; name="{field}"; filename="..."\r\n\r\nx\r\n'
            f'--b\r\nContent-Disposition: form-data; name="nodir/x"; filename="..."\r\n\r\ny\r\n--b--\r\n').encode()
    for _ in range(2):
        answer = client.post("/v1/trace", content=body, headers={"content-type": "multipart/form-data; boundary=b"})
        assert answer.status_code == 422 and answer.json()["detail"] == "the form needs a 'file' file (a video)"
    assert not escape.exists()
    assert list(client.app.state.service.tmp.iterdir()) == []


def test_numbers_the_parsers_cannot_take_are_422(make_client, serve_data):
    client = make_client()
    service = client.app.state.service
    service.encoder = object()  # /v1/protect then reads its form (the fields fail before any attack)
    for data in ({"seed": "--5"}, {"steps": "\u00b2"}, {"steps": "9" * 400}, {"eps": "1e400"}):
        answer = client.post("/v1/protect", files={"image": ("p.png", b"x")}, data=data)
        assert answer.status_code == 422, (data, answer.text)


def test_one_bad_file_fails_only_itself(make_client, serve_data):
    """A batch whose decoding fails (a worker killed by one file) is decoded file by file: the
    others in it are scored, the bad one gets a failed verdict (422 here, an error line in a job)."""
    from concurrent.futures import ThreadPoolExecutor

    client = make_client(max_batch=4, max_wait_ms=300)
    predictor = client.app.state.service.predictor
    real = predictor.decode_batch

    def poisoned(paths, *args, **kwargs):
        if any("poison" in str(p) for p in paths):
            raise RuntimeError("decoding worker (pid 1) ended with exit code -9 during the pass")
        return real(paths, *args, **kwargs)

    predictor.decode_batch = poisoned
    videos = serve_data["videos"][:3]
    uploads = [(v.name, v.read_bytes()) for v in videos] + [("poison.mp4", videos[0].read_bytes())]
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda f: client.post("/v1/trace", files={"file": f}), uploads))
    assert [a.status_code for a in answers] == [200, 200, 200, 422]
    assert answers[3].json()["detail"].startswith("poison.mp4: could not be decoded: decoding worker")
    job = client.post("/v1/jobs", files=[("file", f) for f in uploads]).json()["job"]
    status = wait_done(client, job)
    assert status["done"] == 4 and status["errors"] == 1


def test_stopping_the_worker_while_it_gathers_a_batch_is_prompt(serve_data):
    from mmvgm.predict.predictor import Predictor
    from mmvgm.serve.worker import ModelWorker

    with Predictor.from_checkpoint(serve_data["checkpoint"], device="cpu") as predictor:
        worker = ModelWorker(predictor, max_batch=8, max_wait_ms=500)
        future = worker.score(str(serve_data["videos"][0]), "v.mp4")
        time.sleep(0.05)  # the decode thread is gathering, waiting for more files
        started = time.monotonic()
        worker.close(timeout=5)
        assert time.monotonic() - started < 3 and future.result(timeout=5).ok
        assert not any(t.is_alive() for t in worker._threads)


def test_an_upload_that_does_not_arrive_in_time_is_408(make_client):
    client = make_client(request_timeout_s=0.5)

    def slow():
        yield b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.mp4"\r\n\r\n'
        time.sleep(1.5)
        yield b"x\r\n--b--\r\n"

    answer = client.post("/v1/trace", content=slow(), headers={"content-type": "multipart/form-data; boundary=b"})
    assert answer.status_code == 408 and "did not arrive" in answer.json()["detail"]
    assert list(client.app.state.service.tmp.iterdir()) == []


def test_leftovers_of_a_killed_server_are_swept(client, tmp_path):
    """A dead server's scratch folder (named by its PID) and an old upload folder no job names
    go at start-up; live servers' folders, job uploads and new folders stay."""
    import os
    import subprocess
    import tempfile

    from mmvgm.serve.app import SCRATCH_PREFIX, sweep_dead_scratch, sweep_orphan_uploads

    gone = subprocess.Popen(["true"])
    gone.wait()
    dead = Path(tempfile.mkdtemp(prefix=f"{SCRATCH_PREFIX}{gone.pid}-"))
    mine = Path(tempfile.mkdtemp(prefix=f"{SCRATCH_PREFIX}{os.getpid()}-"))
    sweep_dead_scratch()
    assert not dead.exists() and mine.exists() and client.app.state.service.tmp.exists()
    mine.rmdir()
    store = client.app.state.service.store
    uploads = tmp_path / "uploads"
    old, new, kept = (uploads / name for name in ("old", "new", "kept"))
    for folder in (old, new, kept):
        folder.mkdir(parents=True)
    store.create([("a.mp4", str(kept / "a.mp4"))], upload_dir=str(kept))
    for folder in (old, kept):
        os.utime(folder, (time.time() - 2 * 86400,) * 2)
    sweep_orphan_uploads(uploads, store)
    assert not old.exists() and new.exists() and kept.exists()
