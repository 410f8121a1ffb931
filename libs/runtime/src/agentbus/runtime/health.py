"""Health checks of engines and services, and the platform readiness report.

The gateway's `/readyz` and `agentbus status` both call `readiness()`, so they cannot disagree.
ClickHouse is the one engine checked through a service: embedded chDB runs inside the analytics
process and allows a single owner, so analytics reports it in its own health reply.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import asyncpg
import nats.errors
from nats.aio.client import Client as NatsClient
from neo4j import AsyncGraphDatabase
from pydantic import BaseModel, Field

from agentbus.contracts import SERVICES, ComponentHealth, ServiceHealth
from agentbus.contracts import subjects as s

from .settings import Settings

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
    conn = await asyncpg.connect(dsn, timeout=5)
    try:
        version = await conn.fetchval("SHOW server_version")
        vector = await conn.fetchval("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
    finally:
        await conn.close()
    return f"PostgreSQL {version}, pgvector {vector or 'not installed'}"


async def probe_graph(url: str, user: str, password: str) -> str:
    auth = (user, password) if user else None
    driver = AsyncGraphDatabase.driver(url, auth=auth, connection_timeout=5)
    try:
        records, _, _ = await driver.execute_query("RETURN 1 AS ok")
        if records[0]["ok"] != 1:
            raise RuntimeError("unexpected reply")
    finally:
        await driver.close()
    return "Bolt reachable"


def engine_checks(settings: Settings, *names: str) -> dict[str, HealthCheck]:
    """Checks for the named engines that a process reaches over the network."""
    timeout = settings.health_timeout_s
    all_checks: dict[str, HealthCheck] = {
        "postgres": lambda: timed(lambda: probe_postgres(settings.postgres_dsn), timeout),
        "graph": lambda: timed(
            lambda: probe_graph(
                settings.graph_url, settings.graph_user, settings.graph_password.get_secret_value()
            ),
            timeout,
        ),
    }
    return {name: all_checks[name] for name in names}


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
    *,
    self_health: ServiceHealth | None = None,
) -> Readiness:
    """Every engine and every service, checked concurrently.

    `self_health` is the caller's own report when the caller is one of the services (the gateway
    answers for itself instead of asking itself over the bus).
    """
    timeout = settings.health_timeout_s
    checks = engine_checks(settings, "postgres", "graph")
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
