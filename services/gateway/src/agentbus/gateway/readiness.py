"""The gateway's /readyz: public callers learn only ready or not; the detail (versions,
instances, error text of every engine and service) is for the operator token.

Checks are cached for a moment and shared by concurrent callers: each check opens connections
to every engine and asks every service, and /readyz is anonymous.
"""

from __future__ import annotations

import asyncio
import hmac
import time
from collections.abc import Awaitable, Callable

from agentbus.runtime.health import Readiness

CACHE_S = 2.0


class CachedReadiness:
    def __init__(self, check: Callable[[], Awaitable[Readiness]], ttl_s: float = CACHE_S) -> None:
        self.check = check
        self.ttl_s = ttl_s
        self._report: Readiness | None = None
        self._at = 0.0
        self._lock = asyncio.Lock()

    async def report(self) -> Readiness:
        async with self._lock:  # one check at a time; waiters get its result
            if self._report is None or time.monotonic() - self._at > self.ttl_s:
                self._report = await self.check()
                self._at = time.monotonic()
            return self._report


def may_see_detail(authorization: str | None, mode: str, token: str | None) -> bool:
    if mode == "public":
        return True
    if not token or not authorization or not authorization.startswith("Bearer "):
        return False
    return hmac.compare_digest(authorization.removeprefix("Bearer ").encode(), token.encode())
