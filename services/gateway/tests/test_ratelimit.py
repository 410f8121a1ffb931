"""Rate limits over the real NATS KV: exact counts under concurrency, shared by replicas."""

from __future__ import annotations

import asyncio

import nats
import pytest

from agentbus.gateway.app import build  # noqa: F401  (imports the gateway in its own order)
from agentbus.gateway.ratelimit import DEFAULT_LIMITS, Rule, open_limiter
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
    assert Rule.parse("200/day") == Rule(200, 86400)
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


def test_defaults_are_the_agent_templates_per_route_limits() -> None:
    """The seed's chat 30/min, stream 20/min, register 10/hour, login 20/min (README: why its
    200/day + 50/hour catch-all is not ours)."""
    rules = {route: Rule.parse(text) for route, text in DEFAULT_LIMITS.items()}
    assert rules["chat"] == Rule(30, 60)
    assert rules["stream"] == Rule(20, 60)
    assert rules["register"] == Rule(10, 3600)
    assert rules["login"] == Rule(20, 60)


async def test_a_setting_raises_one_route_and_keeps_the_other_defaults(nats_url: str) -> None:
    nc = await nats.connect(nats_url)
    try:
        await provision(nc.jetstream())
        limiter = await open_limiter(nc.jetstream(), {"chat": "1000/minute"})
        assert limiter.rules["chat"] == Rule(1000, 60)
        assert limiter.rules["register"] == Rule(10, 3600)
        # The 11th registration from one address within the hour is refused.
        who = f"ip:test-{id(limiter)}"
        waits = [await limiter.hit("register", who) for _ in range(11)]
        assert waits[:10] == [None] * 10
        assert waits[10] is not None and 0 < waits[10] <= 3600
    finally:
        await nc.close()


async def test_concurrent_hits_of_one_replica_share_compare_and_sets(nats_url: str) -> None:
    """32 requests of one tenant at once do not queue behind 32 compare-and-sets each: the hits
    waiting while one is in flight are added together, and the stored count is still exact."""
    nc = await nats.connect(nats_url)
    try:
        await provision(nc.jetstream())
        limiter = await open_limiter(nc.jetstream(), {"stream": "1000/hour"})
        writes = 0
        update, create = limiter.kv.update, limiter.kv.create

        async def counted_update(*args: object, **kwargs: object) -> int:
            nonlocal writes
            writes += 1
            return await update(*args, **kwargs)  # type: ignore[arg-type]

        async def counted_create(*args: object, **kwargs: object) -> int:
            nonlocal writes
            writes += 1
            return await create(*args, **kwargs)  # type: ignore[arg-type]

        limiter.kv.update, limiter.kv.create = counted_update, counted_create  # type: ignore[method-assign]
        who = f"tenant:batch-{id(limiter)}"
        results = await asyncio.gather(*(limiter.hit("stream", who) for _ in range(32)))
        assert results == [None] * 32
        assert writes < 8  # batches, not one write per hit
        keys = [k for k in await limiter.kv.keys() if k.startswith("stream.")]
        values = [int((await limiter.kv.get(k)).value or b"0") for k in keys]
        assert 32 in values
    finally:
        await nc.close()
