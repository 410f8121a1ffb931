"""Orchestrator replicas starting together on a new database: both prepare the LangGraph
checkpointer's and store's tables, neither fails (langgraph_tables.py). Real PostgreSQL."""

from __future__ import annotations

import asyncio
from typing import Any

from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from langgraph.store.postgres.aio import AsyncPostgresStore
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from agentbus.orchestrator.langgraph_tables import setup_under_lock
from agentbus.runtime.stores.schema import LockKey
from agentbus.runtime.testing import scratch_database


async def test_replicas_starting_together_all_set_up(service_env: dict[str, str]) -> None:
    dsn = service_env["AGENTBUS_POSTGRES_DSN"]
    async with scratch_database(dsn, "checkpoints") as scratch:
        name = await scratch.fetchval("SELECT current_database()")
        pools: list[AsyncConnectionPool[Any]] = [
            AsyncConnectionPool(
                dsn.rsplit("/", 1)[0] + f"/{name}",
                kwargs={"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row},
                min_size=1,
                max_size=4,
                open=False,
            )
            for _ in range(4)
        ]
        try:
            for pool in pools:
                await pool.open(wait=True, timeout=10)
            await asyncio.gather(
                *(
                    setup_under_lock(pool, AsyncPostgresSaver(pool), AsyncPostgresStore(pool))  # type: ignore[arg-type]
                    for pool in pools
                )
            )
            versions = await scratch.fetchval("SELECT count(*) FROM checkpoint_migrations")
            assert versions > 0
            # The lock is free again: a fifth replica later goes through at once.
            held = await scratch.fetchval(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = $1",
                int(LockKey.LANGGRAPH_CHECKPOINTS),
            )
            assert held == 0
        finally:
            for pool in pools:
                await pool.close()
