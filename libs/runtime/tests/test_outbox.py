"""The outbox (pure logic, a fake publish): a record the bus does not take is sent again with its
own message id, never raised to the work it came from, and dropped only after its retries."""

from __future__ import annotations

import asyncio

from nats.js.errors import ServiceUnavailableError
from prometheus_client import CollectorRegistry

from agentbus.runtime.outbox import Outbox


class Bus:
    def __init__(self, refusals: int) -> None:
        self.refusals = refusals
        self.tries: list[tuple[str, object, str]] = []
        self.taken: list[tuple[str, object, str]] = []

    async def publish(
        self, subject: str, payload: object, headers: dict[str, str], stream: str = ""
    ) -> None:
        self.tries.append((subject, payload, headers["Nats-Msg-Id"]))
        if self.refusals:
            self.refusals -= 1
            raise ServiceUnavailableError(description="insufficient resources")
        self.taken.append((subject, payload, headers["Nats-Msg-Id"]))


def outcome(registry: CollectorRegistry, name: str, stream: str = "TELEMETRY") -> float:
    labels = {"stream": stream, "outcome": name}
    return registry.get_sample_value("agentbus_deferred_publishes_total", labels) or 0


async def test_a_refused_record_is_sent_again_with_the_same_id() -> None:
    bus, registry = Bus(refusals=2), CollectorRegistry()
    outbox = Outbox(bus.publish, registry, delays_s=(0.01, 0.01, 0.01))
    # Refused: does not raise.
    taken = await outbox.send("agentbus.v1.telemetry.llm_usage", b"u1", stream="TELEMETRY")
    assert not taken and bus.taken == [] and len(outbox.waiting) == 1
    await outbox.close(5)
    assert [t[:2] for t in bus.taken] == [("agentbus.v1.telemetry.llm_usage", b"u1")]
    assert len({msg_id for _, _, msg_id in bus.tries}) == 1  # JetStream dedupes a lost ack
    assert (outcome(registry, "deferred"), outcome(registry, "resent")) == (1, 1)


async def test_a_record_taken_at_once_waits_for_nothing() -> None:
    bus = Bus(refusals=0)
    outbox = Outbox(bus.publish)
    assert await outbox.send("s", b"a", stream="TELEMETRY")
    assert await outbox.send("s", b"b", stream="TELEMETRY")
    assert [d for _, d, _ in bus.taken] == [b"a", b"b"] and not outbox.waiting
    assert bus.taken[0][2] != bus.taken[1][2]


async def test_a_stable_id_and_the_callers_headers_go_with_every_try() -> None:
    bus = Bus(refusals=1)
    seen: list[dict[str, str]] = []

    async def publish(subject: str, payload: object, headers: dict[str, str], stream: str) -> None:
        seen.append({**headers, "stream": stream})
        await bus.publish(subject, payload, headers)

    outbox = Outbox(publish, delays_s=(0.01,))
    model = {"any": "payload"}  # passed through untouched, whatever the owner's publish takes
    await outbox.send("s", model, stream="INGEST_EVENTS", msg_id="doc:1:indexed",
                      headers={"traceparent": "00-a-b-01"})  # fmt: skip
    await outbox.close(5)
    assert bus.taken == [("s", model, "doc:1:indexed")]
    sent = {"traceparent": "00-a-b-01", "Nats-Msg-Id": "doc:1:indexed", "stream": "INGEST_EVENTS"}
    assert seen == [sent] * 2


async def test_records_are_dropped_only_after_their_retries_or_past_the_bound() -> None:
    bus, registry = Bus(refusals=100), CollectorRegistry()
    outbox = Outbox(bus.publish, registry, delays_s=(0.01, 0.01), max_waiting=2)
    for body in (b"a", b"b", b"c"):
        await outbox.send("s", body, stream="TELEMETRY")
    assert len(outbox.waiting) == 2  # the third is past the bound: dropped at once
    await asyncio.sleep(0.2)
    assert not outbox.waiting and bus.taken == []
    assert len(bus.tries) == 3 + 2 * 2
    assert outcome(registry, "dropped") == 3


async def test_close_drops_what_the_bus_still_refuses_and_names_its_stream() -> None:
    bus, registry = Bus(refusals=100), CollectorRegistry()
    outbox = Outbox(bus.publish, registry, delays_s=(30.0,))
    await outbox.send("s", b"a", stream="ALERTS")
    await outbox.close(0.05)
    assert not outbox.waiting and outcome(registry, "dropped", "ALERTS") == 1


def test_the_retries_fit_the_duplicate_window_of_every_stream_an_outbox_feeds() -> None:
    from agentbus.contracts.streams import ALERTS, INGEST_EVENTS, TELEMETRY
    from agentbus.runtime.outbox import DELAYS_S

    for stream in (TELEMETRY, INGEST_EVENTS, ALERTS):
        assert sum(DELAYS_S) < stream.duplicate_window_s, stream.name
