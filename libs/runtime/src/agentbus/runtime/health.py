"""Health checks of engines and services, and the platform readiness report.

The gateway's `/readyz` and `agentbus status` both call `readiness()`, so they cannot disagree.
ClickHouse is the one engine checked through a service: embedded chDB runs inside the analytics
process and allows a single owner, so analytics reports it in its own health reply.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import nats.errors
from nats.aio.client import Client as NatsClient
from pydantic import BaseModel, Field

from agentbus.contracts import SERVICES, ComponentHealth, ServiceHealth
from agentbus.contracts import subjects as s

from .settings import Settings

if TYPE_CHECKING:
    from neo4j import AsyncDriver

# The database drivers are imported by the probes that use them: every service carries the
# probes (the chassis), but only the services of an engine install its driver (the runtime's
# `postgres` and `graph` extras), so analytics' image has neither.

HealthCheck = Callable[[], Awaitable[ComponentHealth]]

ENGINES = ("nats", "postgres", "graph", "clickhouse")


async def timed(check: Callable[[], Awaitable[str]], timeout: float) -> ComponentHealth:
    """Run a probe; its string result is the detail. Any exception is a failed check."""
    started = time.perf_counter()
    try:
        detail = await asyncio.wait_for(check(), timeout)
        ok = True
    except TimeoutError:
        detail, ok = f"no answer within {timeout:g}s", False
    except Exception as exc:
        detail, ok = f"{type(exc).__name__}: {exc}".strip()[:300], False
    return ComponentHealth(ok=ok, detail=detail, latency_ms=(time.perf_counter() - started) * 1e3)


async def probe_nats(nc: NatsClient) -> str:
    if not nc.is_connected:
        raise ConnectionError("not connected")
    info = await nc.jetstream().account_info()
    return f"connected, JetStream streams={info.streams}"


async def probe_postgres(dsn: str) -> str:
    import asyncpg

    conn = await asyncpg.connect(dsn, timeout=5)
    try:
        version = await conn.fetchval("SHOW server_version")
        vector = await conn.fetchval("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
    finally:
        await conn.close()
    return f"PostgreSQL {version}, pgvector {vector or 'not installed'}"


class GraphProbe:
    """Checks the Bolt server with one long-lived driver, retrying once on a fresh connection.

    Why not a driver per check: FalkorDB's Bolt listener sometimes leaves the first connection
    opened after another client's disconnect unanswered for seconds. A kept-open driver avoids
    the churn, and a retry on a new connection gets past a stalled one.
    """

    def __init__(
        self, url: str, user: str, password: str, timeout: float, *, falkordb: bool = False
    ) -> None:
        self.url = url
        self.falkordb = falkordb
        self.auth = (user, password) if user else None
        self.timeout = timeout
        self._driver: AsyncDriver | None = None

    def _new_driver(self) -> AsyncDriver:
        from .stores.knowledge_graph import async_driver

        return async_driver(
            self.url,
            *(self.auth or ("", "")),
            falkordb=self.falkordb,
            connection_timeout=self.timeout,
            max_connection_pool_size=2,
        )

    async def __call__(self) -> str:
        from neo4j.exceptions import DriverError, Neo4jError

        attempt_timeout = self.timeout / 2
        for attempt in (1, 2):
            if self._driver is None:
                self._driver = self._new_driver()
            try:
                records, _, _ = await asyncio.wait_for(
                    self._driver.execute_query("RETURN 1 AS ok"), attempt_timeout
                )
            except (TimeoutError, Neo4jError, DriverError, OSError):
                self._discard()
                if attempt == 2:
                    raise
                continue
            if records[0]["ok"] != 1:
                raise RuntimeError("unexpected reply")
            return "Bolt reachable"
        raise AssertionError("unreachable")

    def _discard(self) -> None:
        # Closing may wait on the stalled connection: do it in the background.
        if self._driver is not None:
            task = asyncio.get_running_loop().create_task(self._driver.close())
            _background.add(task)
            task.add_done_callback(_background.discard)
            self._driver = None

    async def close(self) -> None:
        if self._driver is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._driver.close(), self.timeout)
            self._driver = None


_background: set[asyncio.Task[None]] = set()


class EngineProbes:
    """The engine checks of one process; keeps the graph driver open between checks."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.graph = GraphProbe(
            settings.graph_url,
            settings.graph_user,
            settings.graph_password.get_secret_value(),
            settings.health_timeout_s,
            falkordb=settings.graph_server == "falkordb",
        )

    def checks(self, *names: str) -> dict[str, HealthCheck]:
        timeout = self.settings.health_timeout_s
        available: dict[str, HealthCheck] = {
            "postgres": lambda: timed(lambda: probe_postgres(self.settings.postgres_dsn), timeout),
            "graph": lambda: timed(self.graph, timeout),
        }
        return {name: available[name] for name in names}

    async def close(self) -> None:
        await self.graph.close()


async def ask_service(nc: NatsClient, service: str, timeout: float) -> ServiceHealth | None:
    """A service's own health reply, or None if no instance answers in time.

    The service bounds each of its own checks by `timeout`, so it gets a second more to reply.
    """
    try:
        reply = await nc.request(s.health(service), b"", timeout=timeout + 1.0)
    except (nats.errors.TimeoutError, nats.errors.NoRespondersError):
        return None
    return ServiceHealth.model_validate_json(reply.data)


class ComponentStatus(BaseModel):
    ok: bool
    detail: str = ""
    latency_ms: float | None = None
    version: str | None = None
    instance: str | None = None


class Readiness(BaseModel):
    ready: bool
    not_ready: list[str] = Field(default_factory=list, description="Names of failing components")
    engines: dict[str, ComponentStatus]
    services: dict[str, ComponentStatus]


async def readiness(
    nc: NatsClient,
    settings: Settings,
    probes: EngineProbes,
    *,
    self_health: ServiceHealth | None = None,
) -> Readiness:
    """Every engine and every service, checked concurrently.

    `self_health` is the caller's own report when the caller is one of the services (the gateway
    answers for itself instead of asking itself over the bus).
    """
    timeout = settings.health_timeout_s
    checks = probes.checks("postgres", "graph")
    others = [svc for svc in SERVICES if self_health is None or svc != self_health.service]
    nats_task = timed(lambda: probe_nats(nc), timeout)
    engine_results, nats_result, replies = await asyncio.gather(
        asyncio.gather(*(check() for check in checks.values())),
        nats_task,
        asyncio.gather(*(ask_service(nc, svc, timeout) for svc in others)),
    )
    engines = {"nats": ComponentStatus(**nats_result.model_dump())}
    engines.update(
        {
            name: ComponentStatus(**res.model_dump())
            for name, res in zip(checks, engine_results, strict=True)
        }
    )
    services: dict[str, ComponentStatus] = {}
    health_by_service = dict(zip(others, replies, strict=True))
    if self_health is not None:
        health_by_service[self_health.service] = self_health
    for svc in SERVICES:
        health = health_by_service.get(svc)
        if health is None:
            services[svc] = ComponentStatus(ok=False, detail="no instance answered")
            continue
        failing = [name for name, c in health.checks.items() if not c.ok]
        services[svc] = ComponentStatus(
            ok=health.ok,
            detail="ready" if health.ok else f"failing checks: {', '.join(failing)}",
            version=health.version,
            instance=health.instance,
        )
    analytics = health_by_service.get("analytics")
    if analytics is not None and "clickhouse" in analytics.checks:
        engines["clickhouse"] = ComponentStatus(**analytics.checks["clickhouse"].model_dump())
    else:
        engines["clickhouse"] = ComponentStatus(
            ok=False, detail="unknown: reported by the analytics service, which did not answer"
        )
    not_ready = [n for n, c in engines.items() if not c.ok] + [
        n for n, c in services.items() if not c.ok
    ]
    return Readiness(ready=not not_ready, not_ready=not_ready, engines=engines, services=services)
