"""Request guards that run before any route: body size and content type.

A body over the limit is refused with 413 before it is read into memory; a JSON endpoint given
another content type gets 415. Both answer in the API's one error shape, and nothing reaches
the bus for them.
"""

from __future__ import annotations

import json
from collections import Counter

from fastapi import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

JSON_TYPES = ("application/json",)
# Routes that take other bodies (uploads, OAuth2 password forms) say so themselves.
OTHER_BODIES = ("/api/v1/documents", "/api/v1/auth/login")
UPLOADS = "/api/v1/documents"


async def _reply(send: Send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class BodyLimits:
    def __init__(self, app: ASGIApp, max_body_bytes: int, max_upload_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.max_upload_bytes = max_upload_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        headers: dict[bytes, bytes] = dict(scope.get("headers") or [])
        path: str = scope.get("path", "")
        limit = self.max_upload_bytes if path.startswith(UPLOADS) else self.max_body_bytes
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            await _reply(send, 413, f"Request body over {limit} bytes")
            return
        ctype = headers.get(b"content-type", b"").split(b";")[0].strip().decode("latin-1").lower()
        has_body = length not in (None, b"0") or b"transfer-encoding" in headers
        if has_body and not path.startswith(OTHER_BODIES) and ctype not in JSON_TYPES:
            await _reply(
                send, 415, f"Content type {ctype or 'none'} is not supported; send application/json"
            )
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _TooLarge
            return message

        try:
            await self.app(scope, counted, send)
        except _TooLarge:
            await _reply(send, 413, f"Request body over {limit} bytes")


class _TooLarge(Exception):
    pass


class TooManyStreams(HTTPException):
    """429: the tenant holds as many open SSE streams on this replica as it may."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            429,
            f"Too many open streams for this tenant (limit {limit}); close one and retry",
            headers={"Retry-After": "5"},
        )


class OpenStreams:
    """Open SSE streams per tenant on this replica. Each costs a JetStream consumer, and the
    cluster has a fixed number of them: one tenant must not take them all."""

    def __init__(self, per_tenant: int) -> None:
        self.per_tenant = per_tenant
        self.open: Counter[str] = Counter()

    def check(self, tenant_id: str) -> None:
        """Raise TooManyStreams if the tenant has no place left now, without taking one: for
        routes whose stream claims its place only once the response has started."""
        if self.open[tenant_id] >= self.per_tenant:
            raise TooManyStreams(self.per_tenant)

    def claim(self, tenant_id: str) -> None:
        """Take a place, or raise TooManyStreams. Every claim is released exactly once."""
        if self.open[tenant_id] >= self.per_tenant:
            raise TooManyStreams(self.per_tenant)
        self.open[tenant_id] += 1

    def release(self, tenant_id: str) -> None:
        self.open[tenant_id] -= 1
        if self.open[tenant_id] <= 0:
            del self.open[tenant_id]
