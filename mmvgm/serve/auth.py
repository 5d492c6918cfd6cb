"""Bearer-token access to ``/v1``: checked in ASGI middleware, before a request's body is read,
so a client without the token cannot make the server receive and spool an upload."""
from __future__ import annotations

import hmac
from typing import Any, Callable, Dict, Optional

from mmvgm.serve.uploads import json_messages

UNAUTHORIZED = "missing or wrong token: send 'Authorization: Bearer <token>'"


def token_matches(header: bytes, token: str) -> bool:
    """Whether an ``Authorization`` header value carries ``token`` (constant-time compare)."""
    scheme, _, value = header.decode("latin-1").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(), token.encode())


class BearerAuth:
    """Answer 401 to requests under ``prefix`` without ``Authorization: Bearer <token>``; with
    no token set, everything passes."""

    def __init__(self, app: Callable, token: Optional[str], prefix: str = "/v1/") -> None:
        self.app, self.token, self.prefix = app, token, prefix

    async def __call__(self, scope: Dict[str, Any], receive: Callable, send: Callable) -> None:
        if (self.token and scope["type"] == "http" and scope["path"].startswith(self.prefix)
                and not token_matches(dict(scope.get("headers") or []).get(b"authorization", b""), self.token)):
            for message in json_messages(401, UNAUTHORIZED, [(b"www-authenticate", b"Bearer")]):
                await send(message)
            return
        await self.app(scope, receive, send)
