"""Pull fetches time out as FastStream expects, so a batch subscriber drops no fetched message.

Over the session's real NATS. Without `pull_fetch.install`, about one fetch in six with a
deadline under 2 ms raised a bare asyncio.TimeoutError, and the batch subscriber below left
messages it had fetched to JetStream's 30 s redelivery.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator
from typing import Annotated, Any

import nats
import nats.errors
import pytest
from faststream import Context
from faststream.nats import NatsBroker
from faststream.nats.message import NatsBatchMessage
from nats.js import JetStreamContext
from nats.js.api import StreamConfig

from agentbus.contracts.streams import ConsumerSpec
from agentbus.runtime import pull_fetch
from agentbus.runtime.consuming import Fetch, durable_subscriber
from agentbus.runtime.provisioning import consumer_config

BatchMessage = Annotated[NatsBatchMessage, Context("message")]


@pytest.fixture
async def consumer(nats_url: str) -> AsyncIterator[tuple[ConsumerSpec, JetStreamContext]]:
    """A fresh stream with one durable consumer (30 s ack wait, as our consumers have)."""
    name = uuid.uuid4().hex[:12]
    spec = ConsumerSpec(
        stream=f"TEST_PULL_{name}",
        durable=f"test-pull-{name}",
        service="test",
        filter_subject=f"agentbus.v1.test.pull.{name}.>",
        ack_wait_s=30,
        max_deliver=3,
    )
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    await js.add_stream(StreamConfig(name=spec.stream, subjects=[spec.filter_subject]))
    await js.add_consumer(spec.stream, consumer_config(spec))
    try:
        yield spec, js
    finally:
        await js.delete_stream(spec.stream)
        await nc.close()


async def test_every_fetch_timeout_is_a_nats_timeout(
    consumer: tuple[ConsumerSpec, JetStreamContext],
) -> None:
    spec, js = consumer
    pull_fetch.install()
    sub = await js.pull_subscribe_bind(spec.durable, spec.stream)
    raised: list[BaseException] = []
    for _ in range(300):
        try:
            await sub.fetch(batch=10, timeout=random.uniform(0.0001, 0.002))
        except TimeoutError as exc:
            raised.append(exc)
    bare = [exc for exc in raised if not isinstance(exc, nats.errors.TimeoutError)]
    assert not bare, f"{len(bare)} of {len(raised)} timeouts were not nats.errors.TimeoutError"
    assert raised, "no fetch timed out on an empty consumer"


async def keep_bytes(msg: Any) -> Any:
    return msg.body


async def test_a_batch_subscriber_hands_over_every_fetched_message(
    nats_url: str, consumer: tuple[ConsumerSpec, JetStreamContext]
) -> None:
    """Short fetch windows under a trickle of messages: each window ends with a fetch whose
    deadline is nearly spent, where the bare timeout used to strike."""
    spec, js = consumer
    seen: list[str] = []
    broker = NatsBroker(nats_url)

    @durable_subscriber(
        broker,
        "test",
        spec,
        title="test.pull",
        fetch=Fetch(100, 0.003, batch=True),
        decoder=keep_bytes,
    )
    async def on_batch(batch: BatchMessage) -> None:
        for raw in batch.raw_message:
            seen.append(raw.data.decode())
            await raw.ack()

    subject = spec.filter_subject.removesuffix(">") + "x"
    sent = [str(i) for i in range(60)]
    await broker.start()
    try:
        for body in sent:
            await js.publish(subject, body.encode())
            await asyncio.sleep(random.uniform(0, 0.01))
        # Far below the 30 s ack wait: a dropped message would come back only after it.
        for _ in range(100):
            if len(seen) >= len(sent):
                break
            await asyncio.sleep(0.1)
    finally:
        await broker.stop()
    assert sorted(seen, key=int) == sent
