"""Helpers for tests that run a service in-process against the real bus."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import nats
from nats.aio.client import Client as NatsClient

from agentbus.contracts import ServiceHealth
from agentbus.contracts import subjects as s

from .service import Service


@contextlib.asynccontextmanager
async def running(service: Service, timeout: float = 30.0) -> AsyncIterator[Service]:
    """Run `service` as a task until the block ends, then stop it as SIGTERM would."""
    task = asyncio.create_task(service.run())
    nc = await nats.connect(service.settings.nats_url)
    try:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:  # ready once it answers its health endpoint
            if task.done():
                task.result()  # re-raise the start-up error
            with contextlib.suppress(nats.errors.TimeoutError, nats.errors.NoRespondersError):
                await nc.request(s.health(service.name), b"", timeout=0.5)
                break
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"{service.name} did not become ready")
            await asyncio.sleep(0.1)
        yield service
    finally:
        await nc.close()
        service.request_stop()
        await asyncio.wait_for(task, timeout)


async def ask_health(nc: NatsClient, service: str) -> ServiceHealth:
    reply = await nc.request(s.health(service), b"", timeout=10)
    return ServiceHealth.model_validate_json(reply.data)
