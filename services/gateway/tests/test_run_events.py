"""Following a run without a JetStream consumer (run_events.py), over real NATS: what was
stored before the subscription by direct get, what is stored after by the stream's republish,
and gaps (a slow reader's dropped messages, a lost last message) filled from the stream."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import nats
import pytest
from nats.aio.client import Client as NatsClient

from agentbus.contracts import new_id
from agentbus.contracts import subjects as s
from agentbus.contracts.streams import RUN_EVENTS
from agentbus.gateway.run_events import ReplayFailed, RunEventFeed
from agentbus.runtime.provisioning import ensure_stream


@pytest.fixture
async def nc(nats_url: str) -> AsyncIterator[NatsClient]:
    client = await nats.connect(nats_url)
    await ensure_stream(client.jetstream(), RUN_EVENTS)
    yield client
    await client.close()


async def publish(nc: NatsClient, run_id: str, *seqs: int) -> None:
    js = nc.jetstream()
    for seq in seqs:
        body = json.dumps({"seq": seq}).encode()
        await js.publish(s.run_events(run_id), body, headers={"Nats-Msg-Id": f"{run_id}:{seq}"})


async def read(feed: RunEventFeed, count: int, timeout: float = 5.0) -> list[int]:
    out: list[int] = []
    while len(out) < count:
        item = await feed.next(timeout)
        assert item is not None, f"silent after {out}"
        out.append(json.loads(item.data)["seq"])
    return out


async def test_stored_then_live_in_order_once_each_and_no_consumer(nc: NatsClient) -> None:
    run_id = new_id()
    consumers = (await nc.jetstream().stream_info(RUN_EVENTS.name)).state.consumer_count
    await publish(nc, run_id, 0, 1, 2)
    await publish(nc, new_id(), 0)  # another run's event in between
    feed = RunEventFeed(nc, run_id)
    await feed.open()
    try:
        await publish(nc, run_id, 3, 4)
        await publish(nc, run_id, 3)  # a retried publish: the stream drops it, so do readers
        await publish(nc, run_id, 5)
        assert await read(feed, 6) == [0, 1, 2, 3, 4, 5]
        assert await feed.next(0.3) is None  # nothing more, not the dropped copy
        info = await nc.jetstream().stream_info(RUN_EVENTS.name)
        assert info.state.consumer_count == consumers
    finally:
        await feed.close()


async def test_a_slow_readers_dropped_messages_come_from_the_stream(nc: NatsClient) -> None:
    run_id = new_id()
    # Room for two pending messages: the rest of a burst is dropped by the client library.
    feed = RunEventFeed(nc, run_id, pending_msgs=2)
    await feed.open()
    try:
        await publish(nc, run_id, *range(10))
        await nc.flush()
        assert await read(feed, 2) == [0, 1]
        await publish(nc, run_id, 10)  # its Nats-Last-Sequence shows the gap
        assert await read(feed, 9) == list(range(2, 11))
    finally:
        await feed.close()


async def test_a_lost_last_message_is_found_in_a_silent_interval(nc: NatsClient) -> None:
    run_id = new_id()
    feed = RunEventFeed(nc, run_id, pending_msgs=1)
    await feed.open()
    try:
        await publish(nc, run_id, 0, 1, 2)  # 1 and 2 dropped, and nothing comes after them
        await nc.flush()
        assert await read(feed, 3, timeout=0.3) == [0, 1, 2]
    finally:
        await feed.close()


async def test_a_stream_that_does_not_answer_fails_the_open(nc: NatsClient) -> None:
    feed = RunEventFeed(nc, new_id(), stream="NO_SUCH_STREAM")
    with pytest.raises(ReplayFailed):
        await feed.open()
    assert feed._sub is None  # nothing left subscribed
