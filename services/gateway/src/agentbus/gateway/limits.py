"""Request guards that run before any route: body size and content type.

A body over the limit is refused with 413 before it is read into memory; a JSON endpoint given
another content type gets 415. Both answer in the API's one error shape, and nothing reaches
the bus for them.
"""

from __future__ import annotations

import json
import time
from collections import Counter, deque
from collections.abc import Callable

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
    cluster has a fixed number of them: one tenant must not take them all.

    Routes whose stream starts inside the response body `reserve()` a place before the
    response starts (so a refusal is a clean 429) and their stream `claim()`s it later. A
    reservation counts against the cap until claimed, so two requests at the same instant at
    the cap cannot both pass; one whose stream never starts (a 404 after the check) lapses
    after `hold_s`.
    """

    def __init__(
        self, per_tenant: int, hold_s: float = 10.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.per_tenant = per_tenant
        self.hold_s = hold_s
        self.clock = clock
        self.open: Counter[str] = Counter()
        self.reserved: dict[str, deque[float]] = {}  # lapse times, oldest first

    def _held(self, tenant_id: str) -> int:
        pending = self.reserved.get(tenant_id)
        if pending is None:
            return self.open[tenant_id]
        now = self.clock()
        while pending and pending[0] <= now:
            pending.popleft()
        if not pending:
            del self.reserved[tenant_id]
        return self.open[tenant_id] + len(pending)

    def reserve(self, tenant_id: str) -> None:
        """Hold a place for a stream that starts once the response has, or raise TooManyStreams."""
        if self._held(tenant_id) >= self.per_tenant:
            raise TooManyStreams(self.per_tenant)
        self.reserved.setdefault(tenant_id, deque()).append(self.clock() + self.hold_s)

    def unreserve(self, tenant_id: str) -> None:
        """Give back the newest reservation: its request was refused before its stream began."""
        pending = self.reserved.get(tenant_id)
        if pending:
            pending.pop()
            if not pending:
                del self.reserved[tenant_id]

    def claim(self, tenant_id: str) -> None:
        """Take a place, or raise TooManyStreams. A reservation of the tenant's, if any, becomes
        this stream (the oldest first: any of the tenant's streams may take it, the open count
        never passes the cap). Every claim is released exactly once."""
        self._held(tenant_id)  # drops lapsed reservations
        pending = self.reserved.get(tenant_id)
        if pending:
            pending.popleft()
            if not pending:
                del self.reserved[tenant_id]
        elif self.open[tenant_id] >= self.per_tenant:
            raise TooManyStreams(self.per_tenant)
        self.open[tenant_id] += 1

    def release(self, tenant_id: str) -> None:
        self.open[tenant_id] -= 1
        if self.open[tenant_id] <= 0:
            del self.open[tenant_id]
