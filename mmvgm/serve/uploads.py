"""Uploads: a body-size limit checked before and while reading, safe names, request folders.

``BodyLimit`` is ASGI middleware: a ``Content-Length`` over the limit is answered 413 before the
body is read, and a body that turns out longer than the limit (chunked, or lying about its
length) is cut off with 413 as soon as it crosses it. The body itself is parsed as a stream by
``mmvgm.serve.forms``.
"""
from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Awaitable, Callable, Dict, Optional, Sequence, Tuple

_SAFE = re.compile(r"[^A-Za-z0-9._ -]+")


class BodyTooLarge(Exception):
    """Raised from ``receive`` when a body crosses the limit."""


def json_messages(status: int, detail: str, headers: Sequence[Tuple[bytes, bytes]] = ()) -> list:
    """The ASGI messages of a ``{"detail": ...}`` answer, for middleware that answers itself."""
    body = json.dumps({"detail": detail}).encode()
    return [{"type": "http.response.start", "status": status,
             "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                         (b"connection", b"close"), *headers]},
            {"type": "http.response.body", "body": body}]


class BodyLimit:
    """Refuse request bodies over ``limit`` bytes with 413 (see the module's docstring)."""

    def __init__(self, app: Callable, limit: int) -> None:
        self.app, self.limit = app, int(limit)

    def _too_large(self) -> str:
        return f"upload too large: the limit is {self.limit / 2**20:.3g} MB (--max-upload-mb)"

    async def __call__(self, scope: Dict[str, Any], receive: Callable[[], Awaitable[dict]],
                        send: Callable[[dict], Awaitable[None]]) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            status, detail = (413, self._too_large()) if declared.isdigit() else (400, "bad Content-Length")
            for message in json_messages(status, detail):
                await send(message)
            return
        seen, over = 0, False

        async def limited_receive() -> dict:
            nonlocal seen, over
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    over = True  # the app may turn this into its own error: ours wins
                    raise BodyTooLarge()
            return message

        async def guarded_send(message: dict) -> None:
            if not over:
                await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except BodyTooLarge:
            pass
        if over:
            for message in json_messages(413, self._too_large()):
                await send(message)


def display_name(filename: Optional[str], default: str = "upload") -> str:
    """The upload's base name, as a record's ``path`` (no folders, no control characters)."""
    name = os.path.basename((filename or "").replace("\\", "/")).strip()
    name = _SAFE.sub("_", name).strip(". ") or default
    return name[:200]


def request_folder(root: Path) -> Path:
    """A new, empty folder for one request's files under ``root`` (removed when it ends)."""
    root.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix="req-", dir=root))
