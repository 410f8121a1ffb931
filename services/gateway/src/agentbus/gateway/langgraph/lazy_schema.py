"""The LangGraph API's tables are migrated on first use, not at the gateway's start-up: they
belong to this API. Every replica may race to migrate them, so the migrations run under an
advisory lock (its key in `agentbus.runtime.stores.schema.LockKey`) and are recorded once."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import asyncpg

from agentbus.runtime.migrations import Migration
from agentbus.runtime.stores.schema import LockKey, migrate


class LazySchema:
    """`ensure()` applies `migrations` once per process, under `lock`, when first called."""

    def __init__(self, pool: asyncpg.Pool, migrations: Sequence[Migration], lock: LockKey) -> None:
        self.pool = pool
        self.migrations = migrations
        self.lock = lock
        self._ready = False
        self._guard = asyncio.Lock()

    async def ensure(self) -> None:
        if self._ready:
            return
        async with self._guard:
            if not self._ready:
                await migrate(self.pool, self.lock, self.migrations)
                self._ready = True
