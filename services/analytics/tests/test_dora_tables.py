"""The DORA tables fed from `events` (migration 2): exact under redelivered copies, following
deletes, and back-filled for a store that had events before the migration; checked against the
plain-Python reference of test_dora.py, on real chDB without the bus."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from agentbus.analytics.deletes import delete_events
from agentbus.analytics.migrations import MIGRATIONS, applied_versions, migrate
from agentbus.analytics.queries import DoraParams, Queries
from agentbus.analytics.rows import COLUMNS, event_row
from agentbus.analytics.store import ClickHouseStore
from agentbus.contracts import DeleteEvents, DomainEvent

from .test_dora import World, check, synthesize


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ClickHouseStore]:
    store = ClickHouseStore(f"chdb://{tmp_path / 'clickhouse'}")
    store.open()
    try:
        yield store
    finally:
        store.close()


def migrated(store: ClickHouseStore, upto: int = len(MIGRATIONS)) -> list[int]:
    applied = migrate(store, MIGRATIONS[:upto])
    # Parts stay as inserted: the answers must be exact before any merge (FINAL's job).
    for (table,) in store.query_sync(
        "SELECT name FROM system.tables WHERE database = currentDatabase()"
        " AND engine LIKE '%MergeTree'"
    ):
        store.command(f"SYSTEM STOP MERGES {table}")
    return applied


def insert(store: ClickHouseStore, events: list[DomainEvent]) -> None:
    rows = [event_row(e, datetime.now(UTC)) for e in events]
    store.insert("events", rows, COLUMNS["events"])


async def dora(store: ClickHouseStore, world: World, **params: Any) -> list[dict[str, Any]]:
    p = DoraParams(since=world.since, until=world.until, **params)
    columns, rows = await Queries(store).dora(world.tenant, p)
    return [dict(zip(columns, row, strict=True)) for row in rows]


async def assert_matches(store: ClickHouseStore, world: World) -> None:
    expected = world.expected()
    rows = await dora(store, world)
    check(rows, expected)
    total = next(r for r in rows if r["service"] == "*")
    assert total["deployments"] == sum(v["deployments"] for v in expected.values())
    assert total["changes"] == sum(v["changes"] for v in expected.values())
    assert total["incidents"] == sum(v["incidents"] for v in expected.values())
    for service in expected:
        check(await dora(store, world, service=service), {service: expected[service]})


async def test_redelivered_copies_change_nothing(store: ClickHouseStore) -> None:
    migrated(store)
    world = synthesize("acme", ["api", "web", "db"], 900, seed=11)
    rng = random.Random(3)
    events = list(world.events)
    rng.shuffle(events)  # deployments before their commits, resolves before their opens
    for i in range(0, len(events), 200):
        insert(store, events[i : i + 200])
    # Copies of 40% of the events, in batches of their own (as a redelivery after a lost ack),
    # and a few twice within one batch.
    copies = rng.sample(events, len(events) * 2 // 5)
    for i in range(0, len(copies), 150):
        insert(store, copies[i : i + 150] + copies[i : i + 5])
    raw = store.query_sync("SELECT count() FROM events WHERE tenant_id = 'acme'")[0][0]
    assert raw > len(events)
    parts = store.query_sync(
        "SELECT table, count() FROM system.parts WHERE active AND startsWith(table, 'dora_')"
        " GROUP BY table"
    )
    assert all(n > 5 for _, n in parts), parts
    await assert_matches(store, world)
    # Another tenant sees none of it.
    other = World("other", world.since, world.until)
    assert await dora(store, other) == []


async def test_a_store_from_before_the_migration_is_back_filled(store: ClickHouseStore) -> None:
    assert migrated(store, 1) == [1]
    world = synthesize("acme", ["api", "web"], 700, seed=5)
    insert(store, world.events[:400])
    insert(store, world.events[300:])  # 100 copies
    assert migrated(store) == [2]
    assert applied_versions(store) == {1, 2}
    await assert_matches(store, world)
    # Events stored after the migration reach the tables through the views.
    later = synthesize("acme", ["api", "web"], 300, seed=6)
    later.since, later.until = world.since, world.until
    insert(store, later.events)
    merged = World("acme", world.since, world.until)
    for w in (world, later):
        merged.events += w.events
        merged.commits.update(w.commits)
        merged.deployments += w.deployments
        merged.incidents += w.incidents
    await assert_matches(store, merged)
    # Applying migration 2 again (an interrupted start-up) adds copies, and changes nothing.
    for statement in MIGRATIONS[1].statements:
        store.command(statement)
    await assert_matches(store, merged)


def _event(tenant: str, id_: str, type_: str, ts: datetime, data: dict[str, Any]) -> DomainEvent:
    return DomainEvent(id=id_, tenant_id=tenant, source="t", type=type_, ts=ts, data=data)


async def test_a_delete_reaches_the_dora_tables(store: ClickHouseStore) -> None:
    migrate(store)  # merges on: a lightweight DELETE waits for its mutation, run by the merges
    kept = synthesize("acme", ["api", "web"], 500, seed=21)
    gone = synthesize("acme", ["api", "web"], 300, seed=22)
    gone_events = [e.model_copy(update={"id": f"sample-{e.id}"}) for e in gone.events]
    t0 = kept.since + timedelta(days=1)
    # Keys shared by kept and deleted events: the aggregates must be derived again.
    kept.commits["shared1"] = t0
    kept.commits["shared2"] = t0
    kept.deployments.append(("api", "dep-kept", t0 + timedelta(hours=5), ["shared2"], False))
    kept.incidents.append(("web", "inc-shared", t0 + timedelta(hours=1), None, ""))
    kept.events += [
        _event("acme", "c1", "commit", t0, {"sha": "shared1", "service": "api"}),
        _event("acme", "c2", "commit", t0, {"sha": "shared2", "service": "api"}),
        _event(
            "acme",
            "d2",
            "deployment",
            t0 + timedelta(hours=5),
            {"service": "api", "commits": ["shared2"], "deployment_id": "dep-kept"},
        ),
        _event(
            "acme",
            "i1",
            "incident",
            t0 + timedelta(hours=1),
            {"incident_id": "inc-shared", "service": "web", "status": "open"},
        ),
    ]
    gone_events += [
        # The only deployment of shared1, the first of shared2, the resolve of inc-shared.
        _event(
            "acme",
            "sample-d1",
            "deployment",
            t0 + timedelta(hours=2),
            {"service": "api", "commits": ["shared1", "shared2"], "deployment_id": "dep-gone"},
        ),
        _event(
            "acme",
            "sample-i1",
            "incident",
            t0 + timedelta(hours=3),
            {"incident_id": "inc-shared", "service": "web", "status": "resolved"},
        ),
    ]
    # Another tenant's events with the same ids stay.
    theirs = synthesize("beta", ["api"], 200, seed=23)
    theirs_events = [e.model_copy(update={"id": f"sample-{e.id}"}) for e in theirs.events]
    insert(store, kept.events + gone_events)
    insert(store, gone_events[:50] + theirs_events)  # a copy not merged yet is one event
    before = {r["service"]: r for r in await dora(store, kept)}
    assert before["*"]["deployments"] > sum(v["deployments"] for v in kept.expected().values())

    done = await delete_events(store, DeleteEvents(tenant_id="acme", id_prefix="sample-"))
    assert (done.deleted, done.error) == (len(gone_events), None)
    await assert_matches(store, kept)
    await assert_matches(store, theirs)
    left = store.query_sync(
        "SELECT count() FROM dora_deployments WHERE tenant_id = 'acme'"
        " AND startsWith(id, 'sample-')"
    )
    assert left == [(0,)]
    lead = store.query_sync(
        "SELECT sha, committed_at, deployed FROM dora_lead FINAL"
        " WHERE tenant_id = 'acme' AND sha IN ('shared1', 'shared2') ORDER BY sha"
    )
    t0_naive = t0.replace(tzinfo=None)
    assert [(sha, c.replace(tzinfo=None)) for sha, c, _ in lead] == [
        ("shared1", t0_naive),
        ("shared2", t0_naive),
    ]
    assert lead[0][2] == {}
    assert {k: v.replace(tzinfo=None) for k, v in lead[1][2].items()} == {
        "api": t0_naive + timedelta(hours=5)
    }
    incident = store.query_sync(
        "SELECT opens, resolves FROM dora_incidents FINAL"
        " WHERE tenant_id = 'acme' AND incident_id = 'inc-shared'"
    )
    assert incident == [(1, 0)]
    again = await delete_events(store, DeleteEvents(tenant_id="acme", id_prefix="sample-"))
    assert again.deleted == 0
