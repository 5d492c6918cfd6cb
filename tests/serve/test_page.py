"""The web page at ``/`` in a real browser (Playwright over Debian's Chromium) against a real
``mmvgm serve``: trace a video, protect a photo, show errors, send the token."""
from __future__ import annotations

import io
import os
import re
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]
WAIT_MS = 60_000  # a loaded 2-core CI runner can take a while to trace and explain
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
FAST_PROTECT = "base: default\nsteps: 8\nencoder_options:\n  vae_max_side: 64\n"


def _missing(reason: str) -> None:
    """CI installs Playwright and Chromium, so there a missing one is a failure, not a skip."""
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("playwright is not installed (pip install playwright)")
    if not CHROMIUM.is_file():
        _missing(f"{CHROMIUM} is missing (apt-get install chromium)")
    with sync_playwright() as p:  # Playwright gives the browser a fresh temporary profile
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    """A fresh page (own cookies and localStorage); fails the test on any uncaught script error."""
    context = browser.new_context(accept_downloads=True, viewport={"width": 1000, "height": 900})
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    script_errors: list = []
    page.on("pageerror", lambda exc: script_errors.append(str(exc)))
    yield page
    context.close()
    assert not script_errors, script_errors


def _open(page, server) -> None:
    page.goto(server.url + "/")
    page.wait_for_selector("#file", state="attached")


def _photo(path: Path, size=(48, 40)) -> Path:
    from PIL import Image

    from tests.attacks.conftest import random_image

    Image.fromarray(random_image(size[1], size[0], seed=3)).save(path)
    return path


def _wait_error(page) -> str:
    page.wait_for_selector("#error", state="visible")
    return page.text_content("#error")


def test_video_is_traced(page, live_server, serve_data, tmp_path):
    import httpx

    server = live_server()
    video = Path(serve_data["videos"][0])
    with video.open("rb") as f:
        direct = httpx.post(server.url + "/v1/trace?windows=4&explain=true",
                            files={"file": (video.name, f, "video/mp4")}, timeout=WAIT_MS / 1000)
    assert direct.status_code == 200, direct.text
    record = direct.json()

    _open(page, server)
    assert page.input_value("#windows") == "4"
    page.set_input_files("#file", str(video))
    page.wait_for_selector("#verdict", state="visible")

    assert page.text_content("#verdict") == record["verdict"]
    shown = page.text_content("#p-fake")
    match = re.fullmatch(r"(\d+(?:\.\d+)?)%", shown.strip())
    assert match, shown
    assert float(match.group(1)) == pytest.approx(100 * record["fake_probability"], abs=0.051)

    rows = page.locator("#sources tbody tr")
    assert rows.count() == len(record["sources"])
    ranked = sorted(record["sources"], key=record["sources"].get, reverse=True)
    assert [rows.nth(i).locator("th").text_content() for i in range(rows.count())] == ranked

    assert page.locator("#windows-chart .mark").count() == len(record["windows"])
    labels = page.locator("#windows-chart text").all_text_contents()
    assert all(str(w["start"]) in labels for w in record["windows"])

    page.wait_for_function("() => { const i = document.getElementById('saliency');"
                           " return i.complete && i.naturalWidth > 0; }")
    assert page.is_hidden("#error") and page.is_hidden("#busy")
    if record.get("warning"):
        assert page.text_content("#warning") == record["warning"]

    shot = tmp_path / "page.png"
    page.screenshot(path=str(shot), full_page=True)
    data = shot.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 1000


def test_photo_is_protected(page, live_server, tmp_path):
    from PIL import Image

    from tests.attacks.conftest import make_svd_dir

    config = tmp_path / "fast.yaml"
    config.write_text(FAST_PROTECT)
    svd = make_svd_dir(tmp_path / "svd")
    server = live_server("--protect-encoder", "svd", "--model-path", str(svd), "--protect-config", str(config))
    photo = _photo(tmp_path / "holiday.png")

    _open(page, server)
    page.fill("#steps", "4")
    page.set_input_files("#file", str(photo))
    page.wait_for_selector("#download", state="visible")

    link = page.locator("#download")
    assert link.get_attribute("download") == "holiday.protected.png"
    with page.expect_download() as info:
        link.click()
    download = info.value
    assert download.suggested_filename == "holiday.protected.png"
    data = Path(download.path()).read_bytes()
    assert data.startswith(PNG_MAGIC)
    assert Image.open(io.BytesIO(data)).size == Image.open(photo).size

    report = dict(zip(page.locator("#report tbody th").all_text_contents(),
                      page.locator("#report tbody td").all_text_contents()))
    assert report["Steps"] == "4"
    assert report["Mode"] == "undirected"
    assert "PSNR" in report and "SSIM" in report
    assert page.is_hidden("#error") and page.is_hidden("#video-result")

    page.fill("#steps", "0")  # the server's one-line refusal of a bad field
    page.set_input_files("#file", str(photo))
    assert _wait_error(page) == "steps must be an integer from 1 to 1000 (got '0')"


def test_errors_are_shown(page, live_server, serve_data, tmp_path):
    server = live_server()  # no --protect-encoder: /v1/protect answers 501
    _open(page, server)
    assert page.is_hidden("#error")

    page.set_input_files("#file", str(serve_data["text"]))
    assert _wait_error(page) == "notes.mp4: not a video: the file contains text"
    assert page.is_hidden("#video-result")

    page.set_input_files("#file", str(_photo(tmp_path / "photo.png")))
    page.wait_for_function("() => document.getElementById('error').textContent.includes('protects no images')")
    assert page.text_content("#error").startswith("this server protects no images")

    page.set_input_files("#file", str(serve_data["videos"][1]))  # a good upload clears the error
    page.wait_for_selector("#verdict", state="visible")
    assert page.is_hidden("#error")


def test_token_is_sent(page, live_server, serve_data, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text("s3cret-token\n")
    server = live_server("--token-file", str(token_file))
    video = str(serve_data["videos"][2])

    _open(page, server)
    page.set_input_files("#file", video)
    assert _wait_error(page) == "missing or wrong token: send 'Authorization: Bearer <token>'"

    page.fill("#token", "s3cret-token")
    page.set_input_files("#file", video)
    page.wait_for_selector("#verdict", state="visible")
    assert page.is_hidden("#error")

    page.reload()  # the token is remembered
    page.wait_for_selector("#file", state="attached")
    assert page.input_value("#token") == "s3cret-token"


TRACE_ONLY = {  # a trace-only checkpoint's record: no P(fake), the source under the open-set threshold
    "schema": 2, "path": "<img src=x onerror=\"document.title='pwned'\">.mp4", "verdict": "not-assessed",
    "source": {"label": "unknown", "probability": None}, "best_source": {"label": "lavie", "probability": 0.41},
    "sources": {"svd-xt": 0.2, "lavie": 0.41, "show-1": 0.39}, "frames": 8, "sampling": "consecutive",
    "windows": [{"source": {"label": "lavie", "probability": 0.6}, "start": 0, "end": 7},
                {"source": {"label": "unknown", "probability": None},
                 "best_source": {"label": "svd-xt", "probability": 0.3}, "start": 4, "end": 11}],
    "warning": "trained on synthetic media",
}


def test_page_renders_any_record(page, tmp_path):
    """Records and failures a tiny checkpoint does not give, answered by a stand-in for the API
    (the page itself served from the static folder): nothing of them is parsed as HTML."""
    import json
    from urllib.parse import urlsplit

    from mmvgm.serve.app import STATIC

    answers = {"/v1/trace": (200, TRACE_ONLY)}

    def serve(route):
        path = urlsplit(route.request.url).path
        if path in answers:
            status, body = answers[path]
            if status is None:
                return route.abort("connectionrefused")
            return route.fulfill(status=status, content_type="application/json", body=json.dumps(body))
        file = STATIC / ("index.html" if path == "/" else path.removeprefix("/static/"))
        if not file.is_file():
            return route.fulfill(status=404, body="")
        return route.fulfill(path=str(file))

    page.route("**/*", serve)
    page.goto("http://mmvgm.test/")
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"\0" * 64)
    page.set_input_files("#file", str(video))
    page.wait_for_selector("#verdict", state="visible")

    assert page.text_content("#verdict") == "not-assessed"
    assert page.text_content("#p-fake") == "not assessed"
    assert page.text_content("#source").startswith("unknown")
    assert "lavie" in page.text_content("#source")
    assert page.text_content("#video-name") == TRACE_ONLY["path"]
    assert page.locator("#results img:not(#saliency):not(#protected)").count() == 0
    assert page.title() != "pwned"
    assert page.locator("#sources tbody th").all_text_contents() == ["lavie", "show-1", "svd-xt"]
    assert page.text_content("#windows-caption").startswith("Top source probability")
    heights = [float(h) for h in page.eval_on_selector_all(
        "#windows-chart .mark", "marks => marks.map(m => m.getAttribute('height'))")]
    assert len(heights) == 2 and heights[0] == pytest.approx(2 * heights[1])
    assert page.text_content("#warning") == "trained on synthetic media"
    assert page.is_hidden("#saliency-figure")

    answers["/v1/trace"] = (200, {**TRACE_ONLY, "windows": None, "warning": None})  # --windows 1
    page.set_input_files("#file", str(video))
    page.wait_for_selector("#windows-figure", state="hidden")
    assert page.is_hidden("#warning")

    answers["/v1/trace"] = (422, {"detail": [{"loc": ["query", "windows"], "msg": "too many"},
                                             {"loc": ["body", "file"], "msg": "Field required"}]})
    page.set_input_files("#file", str(video))
    assert _wait_error(page) == "windows: too many; file: Field required"
    assert page.is_hidden("#video-result")

    answers["/v1/trace"] = (None, None)  # the server is gone
    page.set_input_files("#file", str(video))
    page.wait_for_function("() => document.getElementById('error').textContent"
                           ".startsWith('the server could not be reached')")
    assert page.is_hidden("#busy")
