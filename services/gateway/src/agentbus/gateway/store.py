"""Threads and runs the gateway admits, per tenant, in PostgreSQL."""

from __future__ import annotations

import contextlib
import json
from datetime import datetime
from typing import Any

import asyncpg

from agentbus.runtime.migrations import Migration
from agentbus.runtime.stores.schema import LockKey, migrate

# LangGraph's PostgreSQL checkpointer tables (AsyncPostgresSaver), all keyed by thread_id.
CHECKPOINT_TABLES = ("checkpoint_writes", "checkpoint_blobs", "checkpoints")

SCHEMA = """
CREATE TABLE IF NOT EXISTS threads (
    tenant_id   text NOT NULL,
    thread_id   text NOT NULL,
    title       text,
    metadata    jsonb NOT NULL DEFAULT '{}',
    status      text NOT NULL DEFAULT 'idle',
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, thread_id)
);
CREATE INDEX IF NOT EXISTS threads_recent ON threads (tenant_id, updated_at DESC);
CREATE TABLE IF NOT EXISTS runs (
    tenant_id     text NOT NULL,
    run_id        text NOT NULL,
    thread_id     text NOT NULL,
    assistant_id  text NOT NULL,
    status        text NOT NULL DEFAULT 'pending',
    metadata      jsonb NOT NULL DEFAULT '{}',
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, run_id)
);
CREATE INDEX IF NOT EXISTS runs_thread ON runs (tenant_id, thread_id, created_at DESC);
CREATE TABLE IF NOT EXISTS document_uploads (
    tenant_id    text NOT NULL,
    document_id  text NOT NULL,
    uploaded_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, document_id)
);
ALTER TABLE document_uploads ADD COLUMN IF NOT EXISTS bytes bigint NOT NULL DEFAULT 0;
"""

MIGRATIONS = (Migration(1, "threads, runs and uploads", (SCHEMA,)),)


def _row(record: asyncpg.Record | None) -> dict[str, Any] | None:
    if record is None:
        return None
    out = dict(record)
    for key, value in out.items():
        if key == "metadata" and isinstance(value, str):
            out[key] = json.loads(value)
        elif isinstance(value, datetime):
            out[key] = value.isoformat()
    return out


class GatewayStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def ensure_schema(self) -> None:
        await migrate(self.pool, LockKey.GATEWAY_STORE, MIGRATIONS)

    async def record_upload(self, tenant_id: str, document_id: str, size: int = 0) -> None:
        """The tenant uploaded this document (before ingest has a row for it), `size` bytes."""
        await self.pool.execute(
            "INSERT INTO document_uploads (tenant_id, document_id, bytes) VALUES ($1, $2, $3)"
            " ON CONFLICT (tenant_id, document_id)"
            " DO UPDATE SET uploaded_at = now(), bytes = EXCLUDED.bytes",
            tenant_id,
            document_id,
            size,
        )

    async def forget_upload(self, tenant_id: str, document_id: str) -> None:
        await self.pool.execute(
            "DELETE FROM document_uploads WHERE tenant_id = $1 AND document_id = $2",
            tenant_id,
            document_id,
        )

    async def storage_usage(self, tenant_id: str, document_id: str) -> tuple[int, int, int | None]:
        """(documents, bytes) the tenant stores, and the size of `document_id` if it has it."""
        row = await self.pool.fetchrow(
            "SELECT count(*) AS docs, coalesce(sum(bytes), 0) AS bytes,"
            " max(bytes) FILTER (WHERE document_id = $2) AS mine"
            " FROM document_uploads WHERE tenant_id = $1",
            tenant_id,
            document_id,
        )
        assert row is not None
        mine = row["mine"]
        return int(row["docs"]), int(row["bytes"]), None if mine is None else int(mine)

    async def uploaded(self, tenant_id: str, document_id: str) -> bool:
        found = await self.pool.fetchval(
            "SELECT 1 FROM document_uploads WHERE tenant_id = $1 AND document_id = $2",
            tenant_id,
            document_id,
        )
        return found is not None

    async def create_thread(
        self, tenant_id: str, thread_id: str, title: str | None, metadata: dict[str, Any]
    ) -> dict[str, Any]:
        row = await self.pool.fetchrow(
            "INSERT INTO threads (tenant_id, thread_id, title, metadata) VALUES ($1, $2, $3, $4)"
            " ON CONFLICT (tenant_id, thread_id) DO UPDATE SET updated_at = threads.updated_at"
            " RETURNING *",
            tenant_id,
            thread_id,
            title,
            json.dumps(metadata),
        )
        result = _row(row)
        assert result is not None
        return result

    async def new_thread(
        self, tenant_id: str, thread_id: str, metadata: dict[str, Any]
    ) -> dict[str, Any] | None:
        """Insert the thread; None when it exists already (one round trip for the usual case,
        a new id, instead of a look-up first)."""
        return _row(
            await self.pool.fetchrow(
                "INSERT INTO threads (tenant_id, thread_id, metadata) VALUES ($1, $2, $3)"
                " ON CONFLICT (tenant_id, thread_id) DO NOTHING RETURNING *",
                tenant_id,
                thread_id,
                json.dumps(metadata),
            )
        )

    async def thread(self, tenant_id: str, thread_id: str) -> dict[str, Any] | None:
        return _row(
            await self.pool.fetchrow(
                "SELECT * FROM threads WHERE tenant_id = $1 AND thread_id = $2",
                tenant_id,
                thread_id,
            )
        )

    async def threads(self, tenant_id: str, limit: int, offset: int) -> list[dict[str, Any]]:
        rows = await self.pool.fetch(
            "SELECT * FROM threads WHERE tenant_id = $1 ORDER BY updated_at DESC, thread_id"
            " LIMIT $2 OFFSET $3",
            tenant_id,
            limit,
            offset,
        )
        return [r for r in map(_row, rows) if r is not None]

    async def update_thread(
        self, tenant_id: str, thread_id: str, title: str | None, metadata: dict[str, Any] | None
    ) -> dict[str, Any] | None:
        return _row(
            await self.pool.fetchrow(
                "UPDATE threads SET title = coalesce($3, title),"
                " metadata = CASE WHEN $4::jsonb IS NULL THEN metadata"
                " ELSE metadata || $4::jsonb END,"
                " updated_at = now() WHERE tenant_id = $1 AND thread_id = $2 RETURNING *",
                tenant_id,
                thread_id,
                title,
                json.dumps(metadata) if metadata is not None else None,
            )
        )

    async def delete_thread(self, tenant_id: str, thread_id: str) -> bool:
        result = await self.pool.execute(
            "DELETE FROM threads WHERE tenant_id = $1 AND thread_id = $2", tenant_id, thread_id
        )
        await self.pool.execute(
            "DELETE FROM runs WHERE tenant_id = $1 AND thread_id = $2", tenant_id, thread_id
        )
        await self._delete_checkpoints(tenant_id, thread_id)
        return str(result).endswith(" 1")

    async def _delete_checkpoints(self, tenant_id: str, thread_id: str) -> None:
        """The orchestrator's LangGraph checkpoints of the thread, so that re-creating the id
        starts an empty conversation. Their thread key is `<tenant>:<thread>` (keep in step
        with agentbus.orchestrator.runner.thread_key; services do not import each other)."""
        key = f"{tenant_id}:{thread_id}"
        for table in CHECKPOINT_TABLES:
            # Not there before the orchestrator's first start.
            with contextlib.suppress(asyncpg.UndefinedTableError):
                await self.pool.execute(f"DELETE FROM {table} WHERE thread_id = $1", key)

    async def create_run(
        self,
        tenant_id: str,
        run_id: str,
        thread_id: str,
        assistant_id: str,
        metadata: dict[str, Any],
    ) -> None:
        # One statement (atomic as the transaction it replaces): one round trip on the path to
        # a run's first token instead of four (BEGIN, INSERT, UPDATE, COMMIT).
        await self.pool.execute(
            "WITH busy AS (UPDATE threads SET updated_at = now(), status = 'busy'"
            " WHERE tenant_id = $1 AND thread_id = $3)"
            " INSERT INTO runs (tenant_id, run_id, thread_id, assistant_id, metadata)"
            " VALUES ($1, $2, $3, $4, $5)",
            tenant_id,
            run_id,
            thread_id,
            assistant_id,
            json.dumps(metadata),
        )

    async def run(self, tenant_id: str, run_id: str) -> dict[str, Any] | None:
        return _row(
            await self.pool.fetchrow(
                "SELECT * FROM runs WHERE tenant_id = $1 AND run_id = $2", tenant_id, run_id
            )
        )

    async def runs(self, tenant_id: str, thread_id: str, limit: int) -> list[dict[str, Any]]:
        rows = await self.pool.fetch(
            "SELECT * FROM runs WHERE tenant_id = $1 AND thread_id = $2"
            " ORDER BY created_at DESC LIMIT $3",
            tenant_id,
            thread_id,
            limit,
        )
        return [r for r in map(_row, rows) if r is not None]

    async def finish_run(self, tenant_id: str, run_id: str, status: str) -> None:
        await self.pool.execute(
            "WITH r AS (UPDATE runs SET status = $3, updated_at = now()"
            " WHERE tenant_id = $1 AND run_id = $2 RETURNING thread_id)"
            " UPDATE threads SET status = CASE WHEN $3 = 'interrupted' THEN 'interrupted'"
            " WHEN $3 = 'error' THEN 'error' ELSE 'idle' END, updated_at = now()"
            " FROM r WHERE threads.tenant_id = $1 AND threads.thread_id = r.thread_id",
            tenant_id,
            run_id,
            status,
        )
