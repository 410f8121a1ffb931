"""Creating a store's tables at start-up, and the platform's advisory lock keys.

Every replica of every service that uses a table may race to create it, so the DDL runs in a
transaction under a PostgreSQL advisory lock. The keys live here, one per owner, so no two owners
share one by accident (a shared key only serialises more than needed, but a reused number is how
two tables' creators would end up waiting on each other's long migration).
"""

from __future__ import annotations

from enum import IntEnum

import asyncpg


class LockKey(IntEnum):
    """Advisory lock keys (the one-argument, bigint key space)."""

    CHUNKS = 727001  # retrieval/ingest: documents, chunks
    GATEWAY_STORE = 727002  # gateway: uploads, quotas
    AUTH = 727003  # gateway: users, tenants, keys
    DEV_TENANT = 727004  # gateway: creating the dev tenant and its key (a mutex, not DDL)
    LANGGRAPH_CRONS = 727005
    LANGGRAPH_FOLLOWUPS = 727006
    LANGGRAPH_RECORDS = 727013
    LANGGRAPH_ASSISTANTS = 727014
    PIPELINE_SETTINGS = 727017
    QUERY_HISTORY = 727018
    DOCUMENT_VERSIONS = 727019
    EVALUATIONS = 727020
    A2A_PUSH = 727021  # gateway: A2A push notification configs


async def create_under_lock(
    target: asyncpg.Pool | asyncpg.Connection, lock: LockKey, ddl: str
) -> None:
    """Run `ddl` under advisory lock `lock`, in one transaction, on a pooled or given connection."""
    if isinstance(target, asyncpg.Pool):
        async with target.acquire() as conn:
            await _create(conn, lock, ddl)
    else:
        await _create(target, lock, ddl)


async def _create(conn: asyncpg.Connection, lock: LockKey, ddl: str) -> None:
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", int(lock))
        await conn.execute(ddl)
