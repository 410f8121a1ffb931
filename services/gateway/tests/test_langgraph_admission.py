"""Admission on a thread through the `thread_runs` KV bucket, on the real NATS server: two
"gateway replicas" (separate connections) racing, the queue order, stops, releases, stale keys."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import nats
import pytest
from nats.aio.client import Client

from agentbus.contracts import RunRequested, new_id
from agentbus.contracts import subjects as s
from agentbus.contracts.streams import RUNS, THREAD_RUNS
from agentbus.runtime.provisioning import ensure_bucket, ensure_stream
from agentbus.runtime.thread_runs import ThreadRuns, ThreadRunsKV


@pytest.fixture
async def connections(nats_url: str) -> AsyncIterator[tuple[Client, Client]]:
    a, b = await nats.connect(nats_url), await nats.connect(nats_url)
    await ensure_stream(a.jetstream(), RUNS)
    await ensure_bucket(a.jetstream(), THREAD_RUNS)
    yield a, b
    await a.close()
    await b.close()


def run_on(thread_id: str, tenant: str = "t1") -> RunRequested:
    return RunRequested(tenant_id=tenant, run_id=new_id(), thread_id=thread_id)


async def never_stale(_: ThreadRuns) -> bool:
    return False


async def published(nc: Client, run_ids: set[str]) -> set[str]:
    """Which of `run_ids` are in the RUNS stream (read without consuming)."""
    found = set()
    js = nc.jetstream()
    info = await js.stream_info(RUNS.name)
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        try:
            msg = await js.get_msg(RUNS.name, seq)
        except nats.js.errors.NotFoundError:
            continue
        if msg.subject == s.RUNS_SUBMIT and msg.data:
            run_id = RunRequested.model_validate_json(msg.data).run_id
            if run_id in run_ids:
                found.add(run_id)
    return found


async def test_two_replicas_racing_with_reject_admit_exactly_one(
    connections: tuple[Client, Client],
) -> None:
    a, b = connections
    kv_a, kv_b = await ThreadRunsKV.open(a.jetstream()), await ThreadRunsKV.open(b.jetstream())
    thread = new_id()
    runs = [run_on(thread) for _ in range(10)]
    outcomes = await asyncio.gather(
        *((kv_a if i % 2 else kv_b).admit(run, "reject", never_stale) for i, run in enumerate(runs))
    )
    started = [r for r, o in zip(runs, outcomes, strict=True) if o.outcome == "started"]
    assert len(started) == 1
    assert [o.outcome for o in outcomes].count("rejected") == 9
    assert {o.active_run_id for o in outcomes if o.outcome == "rejected"} == {started[0].run_id}
    assert await published(a, {r.run_id for r in runs}) == {started[0].run_id}


async def test_enqueue_keeps_order_and_release_starts_the_next(
    connections: tuple[Client, Client],
) -> None:
    a, b = connections
    kv_a, kv_b = await ThreadRunsKV.open(a.jetstream()), await ThreadRunsKV.open(b.jetstream())
    thread = new_id()
    first, second, third = run_on(thread), run_on(thread), run_on(thread)
    assert (await kv_a.admit(first, "enqueue", never_stale)).outcome == "started"
    queued = await kv_b.admit(second, "enqueue", never_stale)
    assert (queued.outcome, queued.position, queued.active_run_id) == ("queued", 1, first.run_id)
    assert (await kv_a.admit(third, "enqueue", never_stale)).position == 2
    ids = {first.run_id, second.run_id, third.run_id}
    assert await published(a, ids) == {first.run_id}

    # Releasing a run that is not the active one changes nothing.
    assert await kv_b.release("t1", thread, third.run_id) is None
    nxt = await kv_b.release("t1", thread, first.run_id)
    assert nxt is not None and nxt.run_id == second.run_id
    assert await published(a, ids) == {first.run_id, second.run_id}
    assert await kv_a.release("t1", thread, first.run_id) is None  # a second release: no-op
    nxt = await kv_a.release("t1", thread, second.run_id)
    assert nxt is not None and nxt.run_id == third.run_id
    assert await kv_a.release("t1", thread, third.run_id) is None
    value, _ = await kv_a.read("t1", thread)
    assert not value.busy and value.queue == []
    # Free again: the next run starts at once.
    assert (await kv_b.admit(run_on(thread), "reject", never_stale)).outcome == "started"


async def test_interrupt_and_rollback_go_first_and_mark_the_active_run(
    connections: tuple[Client, Client],
) -> None:
    a, _ = connections
    kv = await ThreadRunsKV.open(a.jetstream())
    thread = new_id()
    first, waiting, urgent = run_on(thread), run_on(thread), run_on(thread)
    await kv.admit(first, "reject", never_stale)
    await kv.admit(waiting, "enqueue", never_stale)
    admitted = await kv.admit(urgent, "rollback", never_stale)
    assert (admitted.outcome, admitted.position) == ("queued", 1)
    value, _ = await kv.read("t1", thread)
    assert value.stop == "rollback"
    assert [r.run_id for r in value.queue] == [urgent.run_id, waiting.run_id]

    seen: list[str | None] = []

    async def hook(ending: ThreadRuns) -> None:
        seen.append(ending.stop)

    nxt = await kv.release("t1", thread, first.run_id, before_next=hook)
    assert seen == ["rollback"] and nxt is not None and nxt.run_id == urgent.run_id
    value, _ = await kv.read("t1", thread)
    assert value.stop is None  # the mark belonged to the run that ended


async def test_cancel_removes_a_waiting_run_and_marks_an_active_one(
    connections: tuple[Client, Client],
) -> None:
    a, _ = connections
    kv = await ThreadRunsKV.open(a.jetstream())
    thread = new_id()
    first, second = run_on(thread), run_on(thread)
    await kv.admit(first, "reject", never_stale)
    await kv.admit(second, "enqueue", never_stale)
    assert await kv.mark_stop("t1", thread, second.run_id, "cancel") == "removed"
    assert await kv.mark_stop("t1", thread, first.run_id, "cancel") == "active"
    assert await kv.mark_stop("t1", thread, new_id(), "cancel") == "unknown"
    assert await kv.release("t1", thread, first.run_id) is None  # nothing left to start
    assert await published(a, {second.run_id}) == set()


async def test_a_stale_active_run_is_released_by_the_next_admission(
    connections: tuple[Client, Client],
) -> None:
    a, _ = connections
    kv = await ThreadRunsKV.open(a.jetstream())
    thread = new_id()
    dead = run_on(thread)
    await kv.admit(dead, "reject", never_stale)

    async def dead_is_stale(value: ThreadRuns) -> bool:
        return value.active is not None and value.active.run_id == dead.run_id

    assert (await kv.admit(run_on(thread), "reject", dead_is_stale)).outcome == "started"


async def test_threads_and_tenants_do_not_share_a_key(connections: tuple[Client, Client]) -> None:
    a, _ = connections
    kv = await ThreadRunsKV.open(a.jetstream())
    thread = new_id()
    assert (await kv.admit(run_on(thread, "t1"), "reject", never_stale)).outcome == "started"
    assert (await kv.admit(run_on(thread, "t2"), "reject", never_stale)).outcome == "started"
    assert (await kv.admit(run_on(new_id(), "t1"), "reject", never_stale)).outcome == "started"
