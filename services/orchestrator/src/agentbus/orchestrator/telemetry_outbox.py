"""The telemetry a run sends (LlmUsage, ToolCalled, RunFinished): never the run's failure, and
not lost to a short outage.

A telemetry publish the bus did not take (the TELEMETRY stream out of storage, a stream electing
its leader, NATS reconnecting) used to raise inside the model call or the tool and end the run as
the graph's error, although the answer was fine. Now a record the bus does not take waits here
and is sent again in the background with growing delays. Its `Nats-Msg-Id`, fixed when the
record is made, lets JetStream drop a second copy when only the first ack was lost, so analytics
counts each call once. A record that still fails after the last delay is dropped with a log line
and a metric; so are records past the bound on waiting ones (memory, during a long outage).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from prometheus_client import CollectorRegistry, Counter

from agentbus.contracts import new_id
from agentbus.runtime.tasks import cancel_and_wait

log = logging.getLogger("agentbus.orchestrator.telemetry")

Publish = Callable[[str, bytes, dict[str, str]], Awaitable[None]]

# 108.5 s in all: inside TELEMETRY's 2-minute duplicate window, so a copy whose first ack was
# lost is still recognised by its id.
DELAYS_S = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0)
MAX_WAITING = 10_000


class TelemetryOutbox:
    def __init__(
        self,
        publish: Publish,
        registry: CollectorRegistry | None = None,
        delays_s: tuple[float, ...] = DELAYS_S,
        max_waiting: int = MAX_WAITING,
    ) -> None:
        self.publish = publish
        self.delays_s = delays_s
        self.max_waiting = max_waiting
        self.waiting: set[asyncio.Task[None]] = set()
        self.outcomes = (
            Counter(
                "agentbus_telemetry_deferred",
                "Telemetry records the bus did not take at once, by outcome"
                " (deferred, resent, dropped)",
                ["outcome"],
                registry=registry,
            )
            if registry is not None
            else None
        )

    def _count(self, outcome: str) -> None:
        if self.outcomes is not None:
            self.outcomes.labels(outcome).inc()

    async def send(self, subject: str, data: bytes) -> None:
        """Publish one record; if the bus does not take it, send it later. Never raises."""
        msg_id = new_id()
        try:
            await self.publish(subject, data, {"Nats-Msg-Id": msg_id})
            return
        except Exception as exc:
            if len(self.waiting) >= self.max_waiting:
                log.error(
                    "telemetry dropped: too many records waiting for the bus",
                    extra={"subject": subject, "error": repr(exc)},
                )
                self._count("dropped")
                return
            log.warning(
                "telemetry not taken by the bus; sent again later",
                extra={"subject": subject, "error": repr(exc)},
            )
            self._count("deferred")
        task = asyncio.create_task(self._resend(subject, data, msg_id))
        self.waiting.add(task)
        task.add_done_callback(self.waiting.discard)

    async def _resend(self, subject: str, data: bytes, msg_id: str) -> None:
        error: Exception | None = None
        for delay in self.delays_s:
            await asyncio.sleep(delay)
            try:
                await self.publish(subject, data, {"Nats-Msg-Id": msg_id})
            except Exception as exc:
                error = exc
                continue
            self._count("resent")
            return
        log.error(
            "telemetry dropped after retries", extra={"subject": subject, "error": repr(error)}
        )
        self._count("dropped")

    async def close(self, timeout_s: float) -> None:
        """Give the waiting records `timeout_s` to get through, then drop the rest."""
        if not self.waiting:
            return
        _, left = await asyncio.wait(set(self.waiting), timeout=timeout_s)
        for task in left:
            await cancel_and_wait(task)
        if left:
            log.error("telemetry dropped at shutdown", extra={"records": len(left)})
            for _ in left:
                self._count("dropped")
