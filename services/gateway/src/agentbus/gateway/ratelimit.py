"""Rate limits per tenant (or client address, before login) and route, shared by every gateway
replica through the NATS KV bucket `rate_limits`.

Fixed windows: the key `<route>.<who>.<window start>` counts requests with compare-and-set
updates, so two replicas never lose each other's counts. Over the limit: 429 with Retry-After.
Within a replica, concurrent hits on one key are counted together: while one compare-and-set is
in flight, later hits wait for the next one, which adds all of them at once and gives each its
own number. Hits taking turns one compare-and-set each (a lock per key) queued a tenant's 32
concurrent requests behind 64 KV round trips (issue 18); racing each other, most would lose.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue
from prometheus_client import CollectorRegistry, Counter

from agentbus.contracts.streams import RATE_LIMITS

from .auth.deps import Principal, current_principal

_RULE = re.compile(r"^\s*(\d+)\s*/\s*(second|minute|hour|day)\s*$")
_SECONDS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}

# chat, stream, register and login are the agent template's (seeds 001/003) per-route limits.
# Its catch-all "200/day, 50/hour" on every other route is not adopted: here every other route
# that costs work has its own rule (upload, analytics, list), and the rest are reads a
# LangGraph SDK client or the web app polls (run status, thread state), which 50/hour per
# tenant would cut off within minutes. See the gateway README.
DEFAULT_LIMITS = {
    "chat": "30/minute",
    "stream": "20/minute",
    "register": "10/hour",
    "login": "20/minute",
    # Per account, from any address: guessing one user's password from many addresses.
    "login_account": "10/minute",
    "upload": "30/minute",
    # Dashboards poll; a DORA query over a long period costs ClickHouse seconds.
    "analytics": "120/minute",
    # Thread and run listings (LangGraph's /threads/search, /threads/{id}/runs).
    "list": "300/minute",
}


@dataclass(frozen=True)
class Rule:
    limit: int
    window_s: int

    @classmethod
    def parse(cls, text: str) -> Rule:
        match = _RULE.match(text)
        if match is None:
            raise ValueError(
                f"rate limit {text!r} is not like '60/minute' (second/minute/hour/day)"
            )
        return cls(int(match.group(1)), _SECONDS[match.group(2)])


class RateLimiter:
    def __init__(
        self, kv: KeyValue, rules: dict[str, Rule], registry: CollectorRegistry | None = None
    ) -> None:
        self.kv = kv
        self.rules = rules
        self.rejected = (
            Counter(
                "agentbus_rate_limited_requests",
                "Requests refused with 429 by a rate limit, by route",
                ["route"],
                registry=registry,
            )
            if registry is not None
            else None
        )
        # Per key with hits in flight: the hits waiting for the next compare-and-set.
        self._waiting: dict[str, list[asyncio.Future[int]]] = {}
        self._drains: set[asyncio.Task[None]] = set()

    async def hit(self, route: str, who: str) -> float | None:
        """Count one request; the seconds to wait if it is over the limit, else None."""
        rule = self.rules.get(route)
        if rule is None:
            return None
        now = time.time()
        window = int(now // rule.window_s) * rule.window_s
        # KV keys allow [-/_=.a-zA-Z0-9]: hash whoever it is.
        subject = hashlib.sha256(who.encode()).hexdigest()[:20]
        key = f"{route}.{subject}.{window}"
        number: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        waiting = self._waiting.get(key)
        if waiting is None:  # no compare-and-set in flight for this key: start counting
            waiting = self._waiting[key] = []
            drain = asyncio.create_task(self._drain(key, rule))
            self._drains.add(drain)
            drain.add_done_callback(self._drains.discard)
        waiting.append(number)
        count = await asyncio.shield(number)
        if count > rule.limit:
            if self.rejected is not None:
                self.rejected.labels(route).inc()
            return max(1.0, window + rule.window_s - now)
        return None

    async def _drain(self, key: str, rule: Rule) -> None:
        """Count the key's waiting hits, a batch per compare-and-set, until none wait."""
        while batch := self._waiting.get(key):
            self._waiting[key] = []
            try:
                first = await self._count(key, rule, len(batch))
            except Exception as exc:
                for hit in batch:
                    hit.set_exception(exc)
            else:
                for i, hit in enumerate(batch):
                    hit.set_result(first + i)
        self._waiting.pop(key, None)

    async def _count(self, key: str, rule: Rule, hits: int = 1) -> int:
        """The first of `hits` consecutive numbers in the window; only other replicas can
        race it now. The stored count never passes the limit (refused hits are not kept)."""
        for _ in range(20):  # bounded retries of the compare-and-set
            try:
                entry = await self.kv.get(key)
            except KeyNotFoundError:
                try:
                    await self.kv.create(key, str(min(hits, rule.limit)).encode())
                    return 1
                except KeyWrongLastSequenceError:
                    continue
            counted = int(entry.value or b"0")
            if counted >= rule.limit:
                return counted + 1
            try:
                stored = str(min(counted + hits, rule.limit)).encode()
                await self.kv.update(key, stored, last=entry.revision)
                return counted + 1
            except KeyWrongLastSequenceError:
                continue
        return rule.limit + 1  # heavy contention: treat as over, never as free


async def _enforce(request: Request, route: str, who: str) -> None:
    limiter: RateLimiter | None = getattr(request.app.state, "limiter", None)
    if limiter is None:
        return
    wait = await limiter.hit(route, who)
    if wait is not None:
        raise HTTPException(
            429,
            f"Too many {route} requests; retry in {math.ceil(wait)} s",
            headers={"Retry-After": str(math.ceil(wait))},
        )


def per_tenant(route: str) -> Callable[..., Awaitable[None]]:
    """A route dependency: 429 with Retry-After when the tenant is over `route`'s limit."""

    async def check(
        request: Request, principal: Annotated[Principal, Depends(current_principal)]
    ) -> None:
        await _enforce(request, route, f"tenant:{principal.tenant_id}")

    return check


async def per_account(request: Request, route: str, email: str) -> None:
    """429 when `email` is over `route`'s limit, whatever address the requests come from."""
    await _enforce(request, route, f"account:{email.strip().lower()}")


def per_client(route: str) -> Callable[..., Awaitable[None]]:
    """The same for routes used before login (register, login): keyed by client address."""

    async def check(request: Request) -> None:
        await _enforce(request, route, f"ip:{request.client.host if request.client else '?'}")

    return check


async def open_limiter(
    js: object, limits: dict[str, str], registry: CollectorRegistry | None = None
) -> RateLimiter:
    kv = await js.key_value(RATE_LIMITS.name)  # type: ignore[attr-defined]
    rules = {route: Rule.parse(text) for route, text in {**DEFAULT_LIMITS, **limits}.items()}
    return RateLimiter(kv, rules, registry)
