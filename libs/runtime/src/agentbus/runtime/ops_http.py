"""A bus service's probes and metrics over HTTP: /healthz, /readyz, /metrics.

Bus services have no web framework; Kubernetes probes and Prometheus still need plain HTTP. The
three routes are a bare ASGI app served by uvicorn (which the gateway already runs), so HTTP
parsing, keep-alive and slow clients are uvicorn's, not ours.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from agentbus.contracts import ServiceHealth

Response = tuple[int, str, bytes]
Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class OpsServer:
    def __init__(
        self,
        service: str,
        health: Callable[[], Awaitable[ServiceHealth]],
        registry: CollectorRegistry,
    ) -> None:
        self.service = service
        self.health = health
        self.registry = registry
        self._server: Any = None  # uvicorn.Server, imported when started
        self._task: asyncio.Task[None] | None = None

    async def start(self, sock: socket.socket) -> int:
        """Serve on a bound socket; its port, once uvicorn serves it."""
        import uvicorn

        class Server(uvicorn.Server):
            # The service owns SIGTERM/SIGINT and stops this server itself; uvicorn would
            # otherwise swap the process's handlers while it serves.
            @contextlib.contextmanager
            def capture_signals(self) -> Iterator[None]:
                yield

        config = uvicorn.Config(self, log_config=None, access_log=False, lifespan="off")
        self._server = Server(config)
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]), name="ops-http")
        while not self._server.started:
            if self._task.done():
                self._task.result()  # raises what stopped it
                raise RuntimeError("the ops HTTP server stopped before it served")
            await asyncio.sleep(0.01)
        return int(sock.getsockname()[1])

    async def stop(self) -> None:
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            with contextlib.suppress(Exception):
                await self._task
        self._server = self._task = None

    async def respond(self, method: str, path: str) -> Response:
        if method != "GET":
            return 405, "application/json", b'{"detail": "Method not allowed"}'
        if path == "/healthz":
            body = {"status": "ok", "service": self.service}
            return 200, "application/json", json.dumps(body).encode()
        if path == "/readyz":
            health = await self.health()
            return (
                (200 if health.ok else 503),
                "application/json",
                health.model_dump_json().encode(),
            )
        if path == "/metrics":
            return 200, CONTENT_TYPE_LATEST, generate_latest(self.registry)
        return 404, "application/json", b'{"detail": "Not Found"}'

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        status, ctype, body = await self.respond(scope["method"], scope["path"])
        headers = [(b"content-type", ctype.encode("latin-1"))]
        if status == 405:
            headers.append((b"allow", b"GET"))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
