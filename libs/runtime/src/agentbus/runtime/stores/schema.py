"""PostgreSQL schemas by numbered migrations (`agentbus.runtime.migrations`), and the platform's
advisory lock keys.

Every replica of every service that owns tables may race to migrate them, so an owner's pending
migrations run in one transaction under its PostgreSQL advisory lock and are recorded in
`schema_migrations (owner, version)` in the same transaction: a replica that waited on the lock
finds them recorded and applies nothing. The keys live here, one per owner (the owner's name in
`schema_migrations` is the key's name), so no two owners share one by accident (a shared key only
serialises more than needed, but a reused number is how two owners would end up waiting on each
other's long migration).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from enum import IntEnum

import asyncpg

from ..migrations import Migration, pending

log = logging.getLogger("agentbus.migrations")


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
    MIGRATIONS = 727022  # creating `schema_migrations` itself
    # orchestrator: langgraph-checkpoint-postgres' and the LangGraph store's own `setup()`, whose
    # migration tables take one insert per version and fail the second replica starting with it.
    LANGGRAPH_CHECKPOINTS = 727023


async def migrate(
    target: asyncpg.Pool | asyncpg.Connection, owner: LockKey, migrations: Sequence[Migration]
) -> list[int]:
    """Apply `owner`'s migrations not yet recorded, in order; returns the versions applied now."""
    if isinstance(target, asyncpg.Pool):
        async with target.acquire() as conn:
            return await _migrate(conn, owner, migrations)
    return await _migrate(target, owner, migrations)


_LEDGER = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    owner text NOT NULL,
    version integer NOT NULL,
    name text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (owner, version)
)
"""


async def _migrate(
    conn: asyncpg.Connection, owner: LockKey, migrations: Sequence[Migration]
) -> list[int]:
    name = owner.name.lower()
    async with conn.transaction():
        # Its own lock: two owners creating the ledger at once would collide in the catalog.
        await conn.execute("SELECT pg_advisory_xact_lock($1)", int(LockKey.MIGRATIONS))
        await conn.execute(_LEDGER)
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", int(owner))
        rows = await conn.fetch("SELECT version FROM schema_migrations WHERE owner = $1", name)
        todo = pending(migrations, {int(r["version"]) for r in rows}, f"PostgreSQL {name}")
        for migration in todo:
            for statement in migration.statements:
                await conn.execute(statement)
            await conn.execute(
                "INSERT INTO schema_migrations (owner, version, name) VALUES ($1, $2, $3)",
                name,
                migration.version,
                migration.name,
            )
    for migration in todo:
        log.info(
            "applied migration",
            extra={"owner": name, "version": migration.version, "migration": migration.name},
        )
    return [m.version for m in todo]
