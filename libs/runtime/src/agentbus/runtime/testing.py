"""Helpers for tests that run a service in-process against the real bus."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

from nats.aio.client import Client as NatsClient
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from agentbus.contracts import ServiceHealth
from agentbus.contracts import subjects as s

from .chassis import Service

# The gateway's production rate limits (chat 30/minute, register 10/hour, ...) are far below what
# a test session does from one address and one tenant, and their windows live in the session's
# NATS KV. Test fixtures raise them with this (AGENTBUS_RATE_LIMITS); a test showing a 429 lowers
# one route on top of it: {**RAISED_RATE_LIMITS, "login": "3/minute"}.
RAISED_RATE_LIMITS: dict[str, str] = {
    "chat": "100000/hour",
    "stream": "100000/hour",
    "register": "100000/hour",
    "login": "100000/hour",
    "login_account": "100000/hour",
    "upload": "100000/hour",
    "analytics": "100000/hour",
    "list": "100000/hour",
}


@contextlib.asynccontextmanager
async def running(service: Service, timeout: float = 30.0) -> AsyncIterator[Service]:
    """Run `service` as a task until the block ends, then stop it as SIGTERM would."""
    task = asyncio.create_task(service.run())
    try:
        # Ready when this instance is: with another replica running, a health reply could come
        # from that one while this one is still starting.
        ready = asyncio.create_task(service.ready.wait())
        done, _ = await asyncio.wait({task, ready}, timeout=timeout, return_when="FIRST_COMPLETED")
        if task in done:
            ready.cancel()
            task.result()  # re-raise the start-up error
            raise RuntimeError(f"{service.name} stopped during start-up")
        if not done:
            ready.cancel()
            raise TimeoutError(f"{service.name} did not become ready")
        yield service
    finally:
        service.request_stop()
        await asyncio.wait_for(task, timeout)


async def ask_health(nc: NatsClient, service: str) -> ServiceHealth:
    reply = await nc.request(s.health(service), b"", timeout=10)
    return ServiceHealth.model_validate_json(reply.data)


_MEMORY_SPANS: InMemorySpanExporter | None = None


def memory_spans() -> InMemorySpanExporter:
    """The spans our code makes through the global tracer provider, collected in memory for a
    test: one exporter per process, attached once (a provider keeps its processors for good),
    emptied on every call."""
    global _MEMORY_SPANS
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    if _MEMORY_SPANS is None:
        _MEMORY_SPANS = InMemorySpanExporter()
        provider.add_span_processor(SimpleSpanProcessor(_MEMORY_SPANS))
    _MEMORY_SPANS.clear()
    return _MEMORY_SPANS


@contextlib.asynccontextmanager
async def scratch_database(dsn: str, prefix: str = "scratch") -> AsyncIterator[Any]:
    """A pool on a new, empty database beside `dsn`'s, dropped afterwards: for tests that need
    tables absent or a ledger of their own."""
    import asyncpg  # only the tests of a PostgreSQL store need it

    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(dsn)
    try:
        await admin.execute(f"CREATE DATABASE {name}")
    finally:
        await admin.close()
    pool = await asyncpg.create_pool(dsn.rsplit("/", 1)[0] + f"/{name}", min_size=1, max_size=6)
    try:
        yield pool
    finally:
        await pool.close()
        admin = await asyncpg.connect(dsn)
        try:
            await admin.execute(f"DROP DATABASE {name}")
        finally:
            await admin.close()
