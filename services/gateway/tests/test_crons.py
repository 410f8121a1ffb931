"""The cron scheduler's claims on real PostgreSQL: several replicas (schedulers sharing the
table) claim each due tick exactly once, and a tick claimed by a replica that died is found
again (same run id) by another."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from agentbus.gateway.langgraph import crons as crons_module
from agentbus.gateway.langgraph.crons import CronCreate, Crons, next_after


@pytest.fixture
async def pool(postgres_engine: Any) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(postgres_engine.url, min_size=1, max_size=8)
    assert pool is not None
    yield pool
    await pool.close()


async def add_due(pool: asyncpg.Pool, tenant: str, n: int, due: datetime) -> list[str]:
    ids = [str(uuid.uuid4()) for _ in range(n)]
    for cron_id in ids:
        await pool.execute(
            "INSERT INTO langgraph_crons (tenant_id, cron_id, assistant_id, schedule,"
            " next_run_date) VALUES ($1, $2, 'echo', '* * * * *', $3)",
            tenant,
            cron_id,
            due,
        )
    return ids


async def test_replicas_claim_each_tick_exactly_once(pool: asyncpg.Pool) -> None:
    replicas = [Crons(pool, svc=None) for _ in range(4)]
    await replicas[0].ready()
    tenant = f"t{uuid.uuid4().hex[:8]}"
    due = datetime.now(UTC) - timedelta(minutes=3)  # three missed ticks: fired once
    ids = await add_due(pool, tenant, 20, due)
    claims = await asyncio.gather(*(r.claim() for r in replicas for _ in range(3)))
    mine = [c for batch in claims for c in batch if c["tenant_id"] == tenant]
    assert sorted(c["cron_id"] for c in mine) == sorted(ids)  # each once, by one replica
    assert len({c["run_id"] for c in mine}) == 20
    rows = await pool.fetch(
        "SELECT next_run_date FROM langgraph_crons WHERE tenant_id = $1", tenant
    )
    now = datetime.now(UTC)
    assert all(now < r["next_run_date"] <= now + timedelta(minutes=1) for r in rows)
    fires = await pool.fetchval(
        "SELECT count(*) FROM langgraph_cron_fires WHERE tenant_id = $1", tenant
    )
    assert fires == 20
    # Nothing is due any more: a later pass claims nothing of this tenant.
    again = await asyncio.gather(*(r.claim() for r in replicas))
    assert [c for batch in again for c in batch if c["tenant_id"] == tenant] == []


async def test_a_claimed_tick_whose_replica_died_is_found_again(
    pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    dead, alive = Crons(pool, svc=None), Crons(pool, svc=None)
    await dead.ready()
    tenant = f"t{uuid.uuid4().hex[:8]}"
    [cron_id] = await add_due(pool, tenant, 1, datetime.now(UTC) - timedelta(seconds=1))
    [claimed] = [c for c in await dead.claim() if c["tenant_id"] == tenant]
    # `dead` never fires it. After the retry delay another replica finds the same tick.
    monkeypatch.setattr(crons_module, "RETRY_AFTER_S", 0.0)
    await asyncio.sleep(0.05)
    found = [c for c in await alive.unfinished() if c["tenant_id"] == tenant]
    assert [(c["cron_id"], c["run_id"]) for c in found] == [(cron_id, claimed["run_id"])]


def test_schedules_and_bodies() -> None:
    start = datetime(2026, 1, 1, 0, 0, 30, tzinfo=UTC)
    assert next_after("*/5 * * * *", start) == datetime(2026, 1, 1, 0, 5, tzinfo=UTC)
    assert next_after("* * * * * */10", start) == datetime(2026, 1, 1, 0, 0, 40, tzinfo=UTC)
    for bad in ("every minute", "* * *", "61 * * * *"):
        with pytest.raises(ValueError, match="cron expression"):
            CronCreate.model_validate({"schedule": bad, "assistant_id": "echo"})
    with pytest.raises(ValueError, match="on_run_completed"):
        CronCreate.model_validate(
            {"schedule": "* * * * *", "assistant_id": "echo", "on_run_completed": "archive"}
        )
    with pytest.raises(ValueError, match="webhook"):
        CronCreate.model_validate({"schedule": "* * * * *", "assistant_id": "echo", "webhook": ""})
