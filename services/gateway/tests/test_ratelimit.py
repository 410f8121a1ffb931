"""Rate limits over the real NATS KV: exact counts under concurrency, shared by replicas."""

from __future__ import annotations

import asyncio

import nats
import pytest

from agentbus.gateway.app import build  # noqa: F401  (imports the gateway in its own order)
from agentbus.gateway.ratelimit import Rule, open_limiter
from agentbus.runtime.provisioning import provision


async def test_concurrent_hits_are_counted_exactly_across_two_replicas(nats_url: str) -> None:
    a, b = await nats.connect(nats_url), await nats.connect(nats_url)
    try:
        await provision(a.jetstream())
        # Two gateway replicas, each with its own connection and limiter.
        one = await open_limiter(a.jetstream(), {"chat": "150/hour"})
        two = await open_limiter(b.jetstream(), {"chat": "150/hour"})
        who = f"tenant:burst-{id(one)}"
        results = await asyncio.gather(
            *(limiter.hit("chat", who) for limiter in (one, two) for _ in range(120))
        )
        allowed = [r for r in results if r is None]
        refused = [r for r in results if r is not None]
        # Not one more, and contention never refuses a request that was within the limit.
        assert len(allowed) == 150 and len(refused) == 90
        assert all(0 < wait <= 3600 for wait in refused)
        # Another tenant has its own window.
        assert await one.hit("chat", "tenant:other") is None
        # Routes without a rule are not limited.
        assert await one.hit("no-such-route", who) is None
    finally:
        await a.close()
        await b.close()


def test_rules_parse_and_bad_rules_are_refused() -> None:
    assert Rule.parse("60/minute") == Rule(60, 60)
    assert Rule.parse(" 5 / second ") == Rule(5, 1)
    for bad in ("60", "sixty/minute", "60/fortnight", "-1/minute"):
        with pytest.raises(ValueError, match="not like"):
            Rule.parse(bad)


async def test_open_limiter_refuses_a_bad_configuration(nats_url: str) -> None:
    nc = await nats.connect(nats_url)
    try:
        await provision(nc.jetstream())
        with pytest.raises(ValueError):
            await open_limiter(nc.jetstream(), {"chat": "lots"})
    finally:
        await nc.close()
