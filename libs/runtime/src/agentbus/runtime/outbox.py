"""Records a service publishes beside its real work (telemetry, ingest progress and outcomes,
anomaly alerts): never that work's failure, and not lost to a short outage.

A publish the bus does not take (the stream at its limit or out of storage, a stream electing its
leader, NATS reconnecting) used to raise inside the work: a model call or a tool ended the run as
the graph's error, and a full INGEST_EVENTS stream failed a document that was indexed fine. Now a
record the bus does not take waits here and is sent again in the background with growing delays.
Its `Nats-Msg-Id`, fixed when the record is made, lets JetStream drop a second copy when only the
first ack was lost, so each record is counted once downstream. A record that still fails after
the last delay is dropped with a log line and a metric; so are records past the bound on waiting
ones (memory, during a long outage).

The payload is passed through untouched: bytes for a raw JetStream publish, a contract model for
FastStream's `broker.publish`, whichever the owner's `publish` takes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter

from agentbus.contracts import new_id

from .tasks import cancel_and_wait

log = logging.getLogger("agentbus.outbox")

# (subject, payload, headers, stream): the stream for an owner that publishes with an expected
# stream (FastStream's `broker.publish(..., stream=)`); others may ignore it.
Publish = Callable[[str, Any, dict[str, str], str], Awaitable[object]]

# 108.5 s in all: inside the 2-minute duplicate window of TELEMETRY and INGEST_EVENTS (the
# shortest of the streams an outbox feeds), so a copy whose first ack was lost is still recognised.
DELAYS_S = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0)
MAX_WAITING = 10_000


class Outbox:
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
        self.waiting: dict[asyncio.Task[None], str] = {}  # each waiting record's stream
        self.outcomes = (
            Counter(
                "agentbus_deferred_publishes",
                "Records the bus did not take at once, by stream and outcome"
                " (deferred, resent, dropped)",
                ["stream", "outcome"],
                registry=registry,
            )
            if registry is not None
            else None
        )

    def _count(self, stream: str, outcome: str) -> None:
        if self.outcomes is not None:
            self.outcomes.labels(stream, outcome).inc()

    async def send(
        self,
        subject: str,
        payload: Any,
        *,
        stream: str,
        msg_id: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> bool:
        """Publish one record; if the bus does not take it, send it later. Never raises.

        True when the bus took it at once. `msg_id` defaults to a fresh id; give a stable one
        when a redelivered job re-sends the same record.
        """
        headers = {**(headers or {}), "Nats-Msg-Id": msg_id or new_id()}
        try:
            await self.publish(subject, payload, headers, stream)
            return True
        except Exception as exc:
            if len(self.waiting) >= self.max_waiting:
                log.error(
                    "record dropped: too many waiting for the bus",
                    extra={"subject": subject, "stream": stream, "error": repr(exc)},
                )
                self._count(stream, "dropped")
                return False
            log.warning(
                "record not taken by the bus; sent again later",
                extra={"subject": subject, "stream": stream, "error": repr(exc)},
            )
        self.defer(subject, payload, stream=stream, headers=headers)
        return False

    def defer(self, subject: str, payload: Any, *, stream: str, headers: dict[str, str]) -> None:
        """Send a record the bus just refused later (`headers` with its `Nats-Msg-Id`), for an
        owner that made the first try itself because it needs the ack (`duplicate`)."""
        self._count(stream, "deferred")
        task = asyncio.create_task(self._resend(subject, payload, stream, headers))
        self.waiting[task] = stream
        task.add_done_callback(lambda done: self.waiting.pop(done, None))

    async def _resend(
        self, subject: str, payload: Any, stream: str, headers: dict[str, str]
    ) -> None:
        error: Exception | None = None
        for delay in self.delays_s:
            await asyncio.sleep(delay)
            try:
                await self.publish(subject, payload, headers, stream)
            except Exception as exc:
                error = exc
                continue
            self._count(stream, "resent")
            return
        log.error(
            "record dropped after retries",
            extra={"subject": subject, "stream": stream, "error": repr(error)},
        )
        self._count(stream, "dropped")

    async def close(self, timeout_s: float) -> None:
        """Give the waiting records `timeout_s` to get through, then drop the rest."""
        if not self.waiting:
            return
        streams = dict(self.waiting)
        _, left = await asyncio.wait(set(streams), timeout=timeout_s)
        for task in left:
            await cancel_and_wait(task)
            self._count(streams[task], "dropped")
        if left:
            log.error("records dropped at shutdown", extra={"records": len(left)})
