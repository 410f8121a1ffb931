"""The telemetry outbox (pure logic, a fake publish): a record the bus does not take is sent
again with its own message id, never raised to the run, and dropped only after its retries."""

from __future__ import annotations

import asyncio

from nats.js.errors import ServiceUnavailableError
from prometheus_client import CollectorRegistry

from agentbus.orchestrator.telemetry_outbox import TelemetryOutbox


class Bus:
    def __init__(self, refusals: int) -> None:
        self.refusals = refusals
        self.tries: list[tuple[str, bytes, str]] = []
        self.taken: list[tuple[str, bytes, str]] = []

    async def publish(self, subject: str, data: bytes, headers: dict[str, str]) -> None:
        self.tries.append((subject, data, headers["Nats-Msg-Id"]))
        if self.refusals:
            self.refusals -= 1
            raise ServiceUnavailableError(description="insufficient resources")
        self.taken.append((subject, data, headers["Nats-Msg-Id"]))


def outcome(registry: CollectorRegistry, name: str) -> float:
    return registry.get_sample_value("agentbus_telemetry_deferred_total", {"outcome": name}) or 0


async def test_a_refused_record_is_sent_again_with_the_same_id() -> None:
    bus, registry = Bus(refusals=2), CollectorRegistry()
    outbox = TelemetryOutbox(bus.publish, registry, delays_s=(0.01, 0.01, 0.01))
    await outbox.send("agentbus.v1.telemetry.llm_usage", b"u1")  # refused: does not raise
    assert bus.taken == [] and len(outbox.waiting) == 1
    await outbox.close(5)
    assert [t[:2] for t in bus.taken] == [("agentbus.v1.telemetry.llm_usage", b"u1")]
    assert len({msg_id for _, _, msg_id in bus.tries}) == 1  # JetStream dedupes a lost ack
    assert (outcome(registry, "deferred"), outcome(registry, "resent")) == (1, 1)


async def test_a_record_taken_at_once_waits_for_nothing() -> None:
    bus = Bus(refusals=0)
    outbox = TelemetryOutbox(bus.publish)
    await outbox.send("s", b"a")
    await outbox.send("s", b"b")
    assert [d for _, d, _ in bus.taken] == [b"a", b"b"] and not outbox.waiting
    assert bus.taken[0][2] != bus.taken[1][2]


async def test_records_are_dropped_only_after_their_retries_or_past_the_bound() -> None:
    bus, registry = Bus(refusals=100), CollectorRegistry()
    outbox = TelemetryOutbox(bus.publish, registry, delays_s=(0.01, 0.01), max_waiting=2)
    for body in (b"a", b"b", b"c"):
        await outbox.send("s", body)
    assert len(outbox.waiting) == 2  # the third is past the bound: dropped at once
    await asyncio.sleep(0.2)
    assert not outbox.waiting and bus.taken == []
    assert len(bus.tries) == 3 + 2 * 2
    assert outcome(registry, "dropped") == 3


async def test_close_drops_what_the_bus_still_refuses() -> None:
    bus, registry = Bus(refusals=100), CollectorRegistry()
    outbox = TelemetryOutbox(bus.publish, registry, delays_s=(30.0,))
    await outbox.send("s", b"a")
    await outbox.close(0.05)
    assert not outbox.waiting and outcome(registry, "dropped") == 1


def test_the_retries_fit_the_streams_duplicate_window() -> None:
    from agentbus.contracts.streams import TELEMETRY
    from agentbus.orchestrator.telemetry_outbox import DELAYS_S

    assert sum(DELAYS_S) < TELEMETRY.duplicate_window_s
