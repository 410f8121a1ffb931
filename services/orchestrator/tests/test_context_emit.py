"""RunContext.emit: one seq per event even when two are in flight, nothing after `end`."""

from __future__ import annotations

import asyncio
import json

import pytest

from agentbus.contracts import RunRequested
from agentbus.orchestrator.context import RunCancelled, RunContext


async def test_concurrent_emits_get_distinct_seqs_and_end_stays_last() -> None:
    published: list[tuple[int, str, str]] = []

    async def publish(subject: str, body: bytes, headers: dict[str, str]) -> None:
        event = json.loads(body)
        await asyncio.sleep(0.01)  # a publish awaiting its ack: the other emit runs meanwhile
        published.append((event["seq"], event["type"], headers["Nats-Msg-Id"]))

    run = RunRequested(tenant_id="acme", run_id="r1", thread_id="t1")
    ctx = RunContext(run=run, publish=publish, router=None, tools=None)  # type: ignore[arg-type]
    # A node's event and the cancel path's `end`, at once (what lost `end` events before).
    await asyncio.gather(ctx.emit("custom", {"step": 1}), ctx.emit("end", status="cancelled"))
    assert [(seq, kind) for seq, kind, _ in published] == [(0, "custom"), (1, "end")]
    assert len({msg_id for _, _, msg_id in published}) == 2  # the stream would drop a repeat
    with pytest.raises(RunCancelled):
        await ctx.emit("custom", {"step": 2})
    await ctx.emit("end", status="cancelled")  # a second `end` is not published
    assert len(published) == 2


async def test_an_emit_cancelled_mid_publish_still_owns_its_seq() -> None:
    published: list[tuple[int, str]] = []
    started = asyncio.Event()

    async def publish(subject: str, body: bytes, headers: dict[str, str]) -> None:
        event = json.loads(body)
        started.set()
        await asyncio.sleep(0.05)  # waiting for the stream's ack when the run is cancelled
        published.append((event["seq"], headers["Nats-Msg-Id"]))

    run = RunRequested(tenant_id="acme", run_id="r2", thread_id="t1")
    ctx = RunContext(run=run, publish=publish, router=None, tools=None)  # type: ignore[arg-type]
    node = asyncio.create_task(ctx.emit("custom", {"step": 1}))
    await started.wait()
    node.cancel()  # what a RunControl cancel does to the run's task
    with pytest.raises(asyncio.CancelledError):
        await node
    await ctx.emit("end", status="cancelled")
    # The custom event was stored with seq 0, so `end` is seq 1: two distinct Nats-Msg-Ids.
    assert published == [(0, "r2:0"), (1, "r2:1")]
