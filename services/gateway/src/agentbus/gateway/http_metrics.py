"""HTTP request metrics of the gateway, for the error-rate and latency panels.

Labelled by method, the route's template (`/threads/{thread_id}/runs`, never the ids: bounded)
and status class. The duration is the time to the response's first byte: a Server-Sent Event
stream stays open for minutes, and its wait for the first event is the latency a user feels.
"""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class HttpMetrics:
    def __init__(self, app: ASGIApp, registry: CollectorRegistry) -> None:
        self.app = app
        self.requests = Counter(
            "agentbus_http_requests", "HTTP requests answered, by method, route and status class",
            ["method", "route", "status"], registry=registry,
        )  # fmt: skip
        self.latency = Histogram(
            "agentbus_http_request_duration_seconds",
            "Time to the first byte of the response, by method and route",
            ["method", "route"], buckets=LATENCY_BUCKETS, registry=registry,
        )  # fmt: skip

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # the app raised before it answered

        async def timed(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                self.latency.labels(scope["method"], _route(scope)).observe(
                    time.perf_counter() - started
                )
            await send(message)

        try:
            await self.app(scope, receive, timed)
        finally:
            self.requests.labels(scope["method"], _route(scope), f"{status // 100}xx").inc()


def _route(scope: Scope) -> str:
    """The matched route's path template; the routing fills `scope["route"]` in place."""
    route = scope.get("route")
    path = getattr(route, "path", None) or getattr(route, "path_format", None)
    if path:
        return str(path)
    # Mounted apps (/metrics, the web app) have no route object: their mount point.
    root = str(scope.get("root_path") or "")
    return root or "unmatched"
