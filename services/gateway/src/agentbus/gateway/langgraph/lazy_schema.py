"""The LangGraph API's tables are created on first use, not at the gateway's start-up: they
belong to this API. Every replica may race to create them, so creation runs under an advisory
lock (its key in `agentbus.runtime.stores.schema.LockKey`)."""

from __future__ import annotations

import asyncio

import asyncpg

from agentbus.runtime.stores.schema import LockKey, create_under_lock


class LazySchema:
    """`ensure()` runs `ddl` once per process, under `lock`, the first time it is called."""

    def __init__(self, pool: asyncpg.Pool, ddl: str, lock: LockKey) -> None:
        self.pool = pool
        self.ddl = ddl
        self.lock = lock
        self._ready = False
        self._guard = asyncio.Lock()

    async def ensure(self) -> None:
        if self._ready:
            return
        async with self._guard:
            if not self._ready:
                await create_under_lock(self.pool, self.lock, self.ddl)
                self._ready = True
