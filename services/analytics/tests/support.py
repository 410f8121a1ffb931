"""Helpers of the analytics tests: ask a named query, wait for a condition."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from nats.aio.client import Client as NatsClient

from agentbus.contracts import AnalyticsQuery, AnalyticsResult
from agentbus.contracts import subjects as s


async def ask(nc: NatsClient, tenant: str, name: str, **params: Any) -> AnalyticsResult:
    query = AnalyticsQuery(tenant_id=tenant, name=name, params=params)  # type: ignore[arg-type]
    reply = await nc.request(s.ANALYTICS_QUERY, query.model_dump_json().encode(), timeout=30)
    return AnalyticsResult.model_validate_json(reply.data)


def as_dicts(result: AnalyticsResult) -> list[dict[str, Any]]:
    assert result.error is None, result.error
    return [dict(zip(result.columns, row, strict=True)) for row in result.rows]


async def eventually(
    check: Callable[[], Awaitable[bool]], timeout: float = 60.0, what: str = "condition"
) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.2)
