"""What the LangGraph API keeps beside the gateway's `threads` and `runs` tables: each run's
multitask strategy and stream modes (a join stream without modes streams the run's own), and
the thread queries the SDK makes (search by metadata, ids and status, sorted)."""

from __future__ import annotations

import json
from typing import Any

import asyncpg

from agentbus.runtime.migrations import Migration
from agentbus.runtime.stores.schema import LockKey

from ..store import _row
from .lazy_schema import LazySchema

SCHEMA = """
CREATE TABLE IF NOT EXISTS langgraph_runs (
    tenant_id           text NOT NULL,
    run_id              text NOT NULL,
    thread_id           text NOT NULL,
    multitask_strategy  text NOT NULL,
    stream_modes        jsonb NOT NULL DEFAULT '["values"]',
    PRIMARY KEY (tenant_id, run_id)
);
"""

MIGRATIONS = (Migration(1, "LangGraph run records", (SCHEMA,)),)

_SORTABLE = {"thread_id", "status", "created_at", "updated_at"}


class Records:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self._schema = LazySchema(pool, MIGRATIONS, LockKey.LANGGRAPH_RECORDS)

    async def ready(self) -> None:
        await self._schema.ensure()

    async def add_run(
        self, tenant_id: str, run_id: str, thread_id: str, strategy: str, modes: list[str]
    ) -> bool:
        """Record the run; False when it was recorded before (a retried create)."""
        await self.ready()
        inserted = await self.pool.fetchval(
            "INSERT INTO langgraph_runs VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING"
            " RETURNING true",
            tenant_id,
            run_id,
            thread_id,
            strategy,
            json.dumps(modes),
        )
        return bool(inserted)

    async def drop_run(self, tenant_id: str, run_id: str) -> None:
        """A run refused at admission leaves no trace."""
        await self.ready()
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "DELETE FROM langgraph_runs WHERE tenant_id = $1 AND run_id = $2",
                tenant_id,
                run_id,
            )
            await conn.execute(
                "DELETE FROM runs WHERE tenant_id = $1 AND run_id = $2", tenant_id, run_id
            )

    async def run(self, tenant_id: str, thread_id: str, run_id: str) -> dict[str, Any] | None:
        await self.ready()
        row = await self.pool.fetchrow(
            "SELECT r.*, coalesce(l.multitask_strategy, 'reject') AS multitask_strategy,"
            " coalesce(l.stream_modes, '[\"values\"]') AS stream_modes"
            " FROM runs r LEFT JOIN langgraph_runs l USING (tenant_id, run_id)"
            " WHERE r.tenant_id = $1 AND r.thread_id = $2 AND r.run_id = $3",
            tenant_id,
            thread_id,
            run_id,
        )
        return _decode(_row(row))

    async def runs(
        self, tenant_id: str, thread_id: str, limit: int, offset: int
    ) -> list[dict[str, Any]]:
        await self.ready()
        rows = await self.pool.fetch(
            "SELECT r.*, coalesce(l.multitask_strategy, 'reject') AS multitask_strategy,"
            " coalesce(l.stream_modes, '[\"values\"]') AS stream_modes"
            " FROM runs r LEFT JOIN langgraph_runs l USING (tenant_id, run_id)"
            " WHERE r.tenant_id = $1 AND r.thread_id = $2"
            " ORDER BY r.created_at DESC, r.run_id LIMIT $3 OFFSET $4",
            tenant_id,
            thread_id,
            limit,
            offset,
        )
        return [d for d in (_decode(_row(r)) for r in rows) if d is not None]

    async def set_run_status(self, tenant_id: str, run_id: str, status: str) -> None:
        await self.pool.execute(
            "UPDATE runs SET status = $3, updated_at = now()"
            " WHERE tenant_id = $1 AND run_id = $2 AND status <> $3",
            tenant_id,
            run_id,
            status,
        )

    async def search_threads(
        self,
        tenant_id: str,
        *,
        metadata: dict[str, Any] | None,
        ids: list[str] | None,
        status: str | None,
        limit: int,
        offset: int,
        sort_by: str | None,
        sort_order: str | None,
    ) -> list[dict[str, Any]]:
        column = sort_by if sort_by in _SORTABLE else "created_at"  # whitelisted: no injection
        order = "ASC" if sort_order == "asc" else "DESC"
        rows = await self.pool.fetch(
            "SELECT * FROM threads WHERE tenant_id = $1"
            " AND ($2::jsonb IS NULL OR metadata @> $2::jsonb)"
            " AND ($3::text[] IS NULL OR thread_id = ANY($3::text[]))"
            " AND ($4::text IS NULL OR status = $4)"
            f" ORDER BY {column} {order}, thread_id LIMIT $5 OFFSET $6",
            tenant_id,
            json.dumps(metadata) if metadata else None,
            ids,
            status,
            limit,
            offset,
        )
        return [r for r in map(_row, rows) if r is not None]


async def count_threads(
    pool: asyncpg.Pool, tenant_id: str, metadata: dict[str, Any] | None, status: str | None
) -> int:
    value = await pool.fetchval(
        "SELECT count(*) FROM threads WHERE tenant_id = $1"
        " AND ($2::jsonb IS NULL OR metadata @> $2::jsonb)"
        " AND ($3::text IS NULL OR status = $3)",
        tenant_id,
        json.dumps(metadata) if metadata else None,
        status,
    )
    return int(value or 0)


async def unfinished_runs(
    pool: asyncpg.Pool, tenant_id: str, thread_id: str | None, run_ids: list[str] | None
) -> list[dict[str, Any]]:
    """Runs not recorded as ended (their events may say they have: callers check)."""
    rows = await pool.fetch(
        "SELECT * FROM runs WHERE tenant_id = $1"
        " AND ($2::text IS NULL OR thread_id = $2)"
        " AND ($3::text[] IS NULL OR run_id = ANY($3::text[]))"
        " AND status NOT IN ('success', 'error', 'cancelled', 'interrupted', 'timeout')"
        " ORDER BY created_at LIMIT 1000",
        tenant_id,
        thread_id,
        run_ids,
    )
    return [r for r in map(_row, rows) if r is not None]


def _decode(row: dict[str, Any] | None) -> dict[str, Any] | None:
    if row is not None and isinstance(row.get("stream_modes"), str):
        row["stream_modes"] = json.loads(row["stream_modes"])
    return row
