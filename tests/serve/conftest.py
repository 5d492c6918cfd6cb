"""A tiny checkpoint, videos, an in-process app and a real ``mmvgm serve`` process on loopback."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator, List, Optional

import pytest

from tests.inference_helpers import make_checkpoint, make_videos

pytest.importorskip("fastapi")

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def serve_data(tmp_path_factory) -> dict:
    """``{"checkpoint", "videos" (6 mp4s), "text" (a text file named .mp4), "root"}``."""
    root = tmp_path_factory.mktemp("serve")
    text = root / "notes.mp4"
    text.write_text("this is not a video\n")
    return {"root": root, "checkpoint": make_checkpoint(root / "ck"), "videos": make_videos(root / "videos", 6),
            "text": text}


def wait_ready(client, timeout: float = 60.0) -> None:
    """Poll ``/readyz`` (a TestClient or an httpx client) until it answers 200."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if client.get("/readyz").status_code == 200:
            return
        time.sleep(0.05)
    raise AssertionError("the service did not become ready")


@pytest.fixture
def make_client(serve_data, tmp_path):
    """``make_client(**settings)``: a ready TestClient of an app over the tiny checkpoint
    (``workers=0`` unless given)."""
    from fastapi.testclient import TestClient

    from mmvgm.serve import ServeSettings, create_app

    clients: List[TestClient] = []

    def make(raise_server_exceptions: bool = True, **overrides) -> TestClient:
        # in-process decoding unless a test asks for workers: each app would start its own
        options = {"checkpoint": str(serve_data["checkpoint"]), "state_dir": tmp_path / f"state{len(clients)}",
                   "workers": 0, **overrides}
        app_kwargs = {k: options.pop(k) for k in ("predictor", "encoder", "lpips") if k in options}
        client = TestClient(create_app(ServeSettings(**options), **app_kwargs),
                            raise_server_exceptions=raise_server_exceptions)
        client.__enter__()
        clients.append(client)
        wait_ready(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def client(make_client):
    return make_client()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    """``mmvgm serve`` in a process of its own, on 127.0.0.1 (started by ``start``)."""

    def __init__(self, checkpoint: Path, state_dir: Path, *extra: str) -> None:
        self.args = [sys.executable, "-m", "mmvgm", "serve", "-c", str(checkpoint), "--state-dir", str(state_dir),
                     "--log-level", "warning", *extra]
        self.state_dir = state_dir
        self.proc: Optional[subprocess.Popen] = None
        self.port = 0
        self.url = ""

    def start(self, timeout: float = 90.0) -> "LiveServer":
        import httpx

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        log = open(self.state_dir.parent / f"server-{self.port}.log", "wb")
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        self.proc = subprocess.Popen(self.args + ["--port", str(self.port)], stdout=log, stderr=subprocess.STDOUT,
                                     env=env, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"serve exited with {self.proc.returncode}: {self.log()}")
            try:
                if httpx.get(self.url + "/readyz", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"serve did not become ready: {self.log()}")

    def log(self) -> str:
        return (self.state_dir.parent / f"server-{self.port}.log").read_text(errors="replace")[-3000:]

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)  # the server and its decoding workers
            self.proc.wait(30)

    def stop(self) -> None:
        self.kill(signal.SIGTERM)


@pytest.fixture
def live_server(serve_data, tmp_path) -> Iterator:
    """``live_server(*extra_args)``: start a real server (stopped at the end of the test)."""
    servers: List[LiveServer] = []

    def start(*extra: str, state_dir: Optional[Path] = None) -> LiveServer:
        server = LiveServer(serve_data["checkpoint"], state_dir or tmp_path / "state", *extra)
        servers.append(server)
        return server.start()

    yield start
    for server in servers:
        server.stop()
