"""Numbered migrations (`agentbus.runtime.migrations`) and their PostgreSQL runner
(`stores.schema.migrate`) over the real PostgreSQL: each applied once, in order, recorded with
its owner; replicas migrating at once apply each once; a failing migration leaves nothing; a
database newer than the code is refused."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest

from agentbus.runtime.migrations import Migration, MigrationError, pending
from agentbus.runtime.stores.schema import LockKey, migrate
from agentbus.runtime.testing import scratch_database


@pytest.fixture
async def pool(service_env: dict[str, str]) -> AsyncIterator[asyncpg.Pool]:
    """A database of its own: `schema_migrations` starts empty."""
    async with scratch_database(service_env["AGENTBUS_POSTGRES_DSN"], "mig") as made:
        yield made


ONE = Migration(1, "notes", ("CREATE TABLE notes (id int PRIMARY KEY)",))
TWO = Migration(2, "note text", ("ALTER TABLE notes ADD COLUMN body text NOT NULL DEFAULT ''",))


async def test_each_migration_is_applied_once_in_order_and_recorded(pool: asyncpg.Pool) -> None:
    assert await migrate(pool, LockKey.QUERY_HISTORY, [ONE]) == [1]
    assert await migrate(pool, LockKey.QUERY_HISTORY, [ONE]) == []  # not run again
    assert await migrate(pool, LockKey.QUERY_HISTORY, [ONE, TWO]) == [2]
    await pool.execute("INSERT INTO notes (id, body) VALUES (1, 'x')")
    rows = await pool.fetch("SELECT owner, version, name FROM schema_migrations ORDER BY version")
    assert [tuple(r) for r in rows] == [
        ("query_history", 1, "notes"),
        ("query_history", 2, "note text"),
    ]
    # Another owner's versions are its own.
    other = Migration(1, "other", ("CREATE TABLE others (id int)",))
    assert await migrate(pool, LockKey.EVALUATIONS, [other]) == [1]


async def test_replicas_starting_together_apply_each_migration_once(pool: asyncpg.Pool) -> None:
    # Not idempotent on purpose: a second run of it would fail.
    results = await asyncio.gather(
        *(migrate(pool, LockKey.DOCUMENT_VERSIONS, [ONE, TWO]) for _ in range(5))
    )
    assert sorted(map(tuple, results)) == [(), (), (), (), (1, 2)]


async def test_a_failing_migration_leaves_nothing_behind(pool: asyncpg.Pool) -> None:
    broken = Migration(2, "broken", ("CREATE TABLE half (id int)", "SELECT no_such_function()"))
    with pytest.raises(asyncpg.UndefinedFunctionError):
        await migrate(pool, LockKey.A2A_PUSH, [ONE, broken])
    # One transaction: neither the table of 1 nor its record, nor half of 2.
    assert await pool.fetchval("SELECT to_regclass('notes')") is None
    assert await pool.fetchval("SELECT to_regclass('half')") is None
    assert await pool.fetchval("SELECT count(*) FROM schema_migrations") == 0


async def test_a_database_newer_than_the_code_is_refused(pool: asyncpg.Pool) -> None:
    await migrate(pool, LockKey.AUTH, [ONE, TWO])
    with pytest.raises(MigrationError, match="newer than this code"):
        await migrate(pool, LockKey.AUTH, [ONE])


def test_versions_must_count_up_from_one() -> None:
    assert pending([ONE, TWO], {1}, "s") == [TWO]
    for bad in ([TWO, ONE], [ONE, ONE], [Migration(0, "zero", ())]):
        with pytest.raises(MigrationError, match="unique, increasing, from 1"):
            pending(bad, set(), "s")
