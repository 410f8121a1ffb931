"""The LangGraph API's tables are created on first use, not at the gateway's start-up: they
belong to this API. Every replica may race to create them, so creation runs under an advisory
lock; each table's key is listed here, so no two share one."""

from __future__ import annotations

import asyncio

import asyncpg

# pg_advisory_xact_lock keys of the LangGraph API's tables, apart from the other stores' keys
# (727001-727004, 727017-727020: chunks, gateway store, auth, settings, history, versions).
RECORDS_LOCK = 727013
ASSISTANTS_LOCK = 727014
CRONS_LOCK = 727005
FOLLOWUPS_LOCK = 727006


class LazySchema:
    """`ensure()` runs `ddl` once per process, under `lock`, the first time it is called."""

    def __init__(self, pool: asyncpg.Pool, ddl: str, lock: int) -> None:
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
                async with self.pool.acquire() as conn, conn.transaction():
                    await conn.execute("SELECT pg_advisory_xact_lock($1)", self.lock)
                    await conn.execute(self.ddl)
                self._ready = True
