"""The LangGraph checkpointer's and store's tables, made by their libraries' own `setup()`.

Their migration ledgers take one insert per version, so two replicas starting together both try
to record version N and the second one fails start-up ("Key (v)=(9) already exists"). Under one
PostgreSQL advisory lock the second waits, then finds every version recorded and applies none.
"""

from __future__ import annotations

import asyncio
from typing import Any

from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from langgraph.store.postgres.aio import AsyncPostgresStore
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from agentbus.runtime.stores.schema import LockKey

LOCK_POLL_S = 0.2


async def setup_under_lock(
    pool: AsyncConnectionPool[Any], saver: AsyncPostgresSaver, store: AsyncPostgresStore
) -> None:
    """Run both setups while holding the lock on a connection of their pool (a session lock:
    a replica that dies here lets go of it with its connection)."""
    key = int(LockKey.LANGGRAPH_CHECKPOINTS)
    async with pool.connection() as conn:
        # Asked again rather than waited on: the checkpointer's migrations create indexes
        # CONCURRENTLY, which waits for every statement running in the database, a blocked
        # `pg_advisory_lock` of another replica included - a deadlock.
        while True:
            if await _try_lock(conn, key):
                break
            await asyncio.sleep(LOCK_POLL_S)  # another process holds it: nothing to await here
        try:
            await saver.setup()
            await store.setup()
        finally:
            await conn.execute("SELECT pg_advisory_unlock(%s)", (key,))


async def _try_lock(conn: AsyncConnection[Any], key: int) -> bool:
    cursor = await conn.execute("SELECT pg_try_advisory_lock(%s) AS locked", (key,))
    row = await cursor.fetchone()
    return bool(row["locked"] if isinstance(row, dict) else row and row[0])
