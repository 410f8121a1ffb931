"""A tiny HTTP server for a bus service's probes and metrics: /healthz, /readyz, /metrics.

Bus services have no web framework; Kubernetes probes and Prometheus still need plain HTTP.
It understands just enough HTTP/1.1 for GET and closes each connection after one response.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from agentbus.contracts import ServiceHealth

Response = tuple[int, str, bytes]


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
        self._server: asyncio.Server | None = None

    async def start(self, host: str, port: int) -> int:
        self._server = await asyncio.start_server(self._handle, host, port)
        return int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None

    async def respond(self, method: str, path: str) -> Response:
        path = path.split("?", 1)[0]
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

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request_line = await asyncio.wait_for(reader.readline(), 10)
            while (await asyncio.wait_for(reader.readline(), 10)) not in (b"\r\n", b"\n", b""):
                pass  # headers are not needed
            parts = request_line.decode("latin-1").split()
            if len(parts) < 2:
                status, ctype, body = 400, "application/json", b'{"detail": "Bad request"}'
            else:
                status, ctype, body = await self.respond(parts[0], parts[1])
            reason = {
                200: "OK",
                400: "Bad Request",
                404: "Not Found",
                405: "Method Not Allowed",
                503: "Service Unavailable",
            }[status]
            head = (
                f"HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            )
            writer.write(head.encode("latin-1") + body)
            await writer.drain()
        except (TimeoutError, ConnectionError, UnicodeDecodeError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
