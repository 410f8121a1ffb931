"""Creating a store's tables at start-up: every replica of every service that uses a table may
race to create it, so the DDL runs in a transaction under a PostgreSQL advisory lock. Each table
owner has its own key (727001-727020 are taken; the owners' modules name theirs)."""

from __future__ import annotations

import asyncpg


async def create_under_lock(pool: asyncpg.Pool, lock: int, ddl: str) -> None:
    """Run `ddl` under advisory lock `lock`, in one transaction."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", lock)
        await conn.execute(ddl)
