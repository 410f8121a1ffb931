"""Buffer decoded messages as rows; insert them in batches; ack only what was stored.

The handlers hand over (table, row, message) and return without acking. The batch is
inserted when it reaches `batch_size` rows (the handler that fills it waits for the insert, which
holds back the next fetch) or when its oldest row is `flush_interval_s` old (a timer task). After
an insert succeeds its messages are acked; after it fails they are NAKed with the consumer's
delay and come back. A process that dies before the ack gets the messages redelivered, and the
ReplacingMergeTree tables collapse the copies by event id (see migrations.py).

While rows wait (a long interval, a slow insert) the timer sends `in_progress` for them so
JetStream does not redeliver messages that are still in hand.

Each insert is also recorded as a `clickhouse.insert <table>` span in the trace of every
message it stored, parented to the trace context the message carries in its headers (the
producer's publish span) and timed with the real insert.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field

from nats.aio.msg import Msg
from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.util.types import AttributeValue
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from agentbus.contracts.streams import ConsumerSpec

from .rows import COLUMNS, Row
from .store import ClickHouseStore

log = logging.getLogger("agentbus.analytics.batcher")
tracer = trace.get_tracer("agentbus.analytics")


class Metrics:
    """The analytics series, in the service's registry (served on /metrics).

    Queue lag per consumer is sampled for every service by the runtime (`QueueLag`).
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.rows = Counter(
            "agentbus_analytics_rows_inserted",
            "Rows inserted into ClickHouse",
            ["table"],
            registry=registry,
        )
        self.failures = Counter(
            "agentbus_analytics_insert_failures",
            "Batch inserts that failed (their messages are NAKed and redelivered)",
            ["table"],
            registry=registry,
        )
        self.flush_seconds = Histogram(
            "agentbus_analytics_flush_duration_seconds",
            "Time to insert one batch into ClickHouse",
            ["table"],
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=registry,
        )
        self.buffered = Gauge(
            "agentbus_analytics_buffered_rows",
            "Rows decoded and waiting for their batch insert (their messages are not acked yet)",
            ["consumer"],
            registry=registry,
        )
        self.batch_rows = Histogram(
            "agentbus_analytics_batch_rows",
            "Rows per batch insert",
            ["table"],
            buckets=(1, 10, 100, 500, 1000, 2000, 5000, 10000),
            registry=registry,
        )


@dataclass
class Pending:
    table: str
    row: Row
    msg: Msg
    parent: Context | None


def delivery_delay(msg: Msg, spec: ConsumerSpec) -> float:
    """The consumer's NAK delay for this message's delivery attempt."""
    try:
        attempt = int(msg.metadata.num_delivered or 1)
    except Exception:
        attempt = 1
    delays = spec.nak_delays_s or (1.0,)
    return float(delays[min(attempt - 1, len(delays) - 1)])


def trace_context(msg: Msg) -> Context | None:
    """The producer's trace context from the message headers, if it sent one."""
    headers = msg.headers
    if not headers or "traceparent" not in headers:
        return None
    return propagate.extract(headers)


@dataclass
class Batcher:
    """One per durable consumer."""

    spec: ConsumerSpec
    store: ClickHouseStore
    metrics: Metrics
    batch_size: int
    flush_interval_s: float
    _pending: list[Pending] = field(default_factory=list)
    _inflight: list[Pending] = field(default_factory=list)
    _oldest: float = 0.0
    _last_beat: float = 0.0
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _closed: bool = False
    _timer: asyncio.Task[None] | None = None

    @property
    def pending(self) -> int:
        return len(self._pending)

    async def add(self, table: str, row: Row, msg: Msg) -> None:
        if self._closed:
            # Shutting down after the last flush: hand it back now rather than after ack_wait.
            with contextlib.suppress(Exception):
                await msg.nak()
            return
        if not self._pending:
            self._oldest = self._last_beat = time.monotonic()
        self._pending.append(Pending(table, row, msg, trace_context(msg)))
        self._gauge()
        if len(self._pending) >= self.batch_size:
            await self.flush()

    async def flush(self) -> None:
        async with self._lock:
            batch, self._pending = self._pending, []
            if not batch:
                return
            self._inflight = batch
            try:
                by_table: dict[str, list[Pending]] = defaultdict(list)
                for item in batch:
                    by_table[item.table].append(item)
                for table, items in by_table.items():
                    await self._insert(table, items)
            finally:
                self._inflight = []
                self._gauge()

    def _gauge(self) -> None:
        self.metrics.buffered.labels(self.spec.durable).set(
            len(self._pending) + len(self._inflight)
        )

    async def _insert(self, table: str, items: list[Pending]) -> None:
        start_ns, started = time.time_ns(), time.perf_counter()
        error: Exception | None = None
        try:
            await asyncio.to_thread(
                self.store.insert, table, [i.row for i in items], COLUMNS[table]
            )
        except Exception as exc:
            error = exc
        end_ns = time.time_ns()
        self._spans(table, items, start_ns, end_ns, error)
        if error is not None:
            self.metrics.failures.labels(table).inc()
            log.warning(
                "batch insert failed; messages will be redelivered",
                extra={"table": table, "rows": len(items), "reason": str(error).splitlines()[0]},
            )
            for item in items:
                with contextlib.suppress(Exception):
                    await item.msg.nak(delay=delivery_delay(item.msg, self.spec))
            return
        self.metrics.flush_seconds.labels(table).observe(time.perf_counter() - started)
        self.metrics.batch_rows.labels(table).observe(len(items))
        self.metrics.rows.labels(table).inc(len(items))
        for item in items:
            # A lost ack only means a redelivery, which the table deduplicates.
            with contextlib.suppress(Exception):
                await item.msg.ack()

    def _spans(
        self, table: str, items: list[Pending], start_ns: int, end_ns: int, error: Exception | None
    ) -> None:
        attributes: dict[str, AttributeValue] = {
            "db.system": "clickhouse",
            "db.system.name": "clickhouse",
            "db.operation.name": "INSERT",
            "db.collection.name": table,
            "db.operation.batch.size": len(items),
        }
        for item in items:
            if item.parent is None:
                continue  # no trace to join; a root span per row would only be noise
            span = tracer.start_span(
                f"clickhouse.insert {table}",
                context=item.parent,
                kind=SpanKind.CLIENT,
                attributes=attributes,
                start_time=start_ns,
            )
            if error is not None:
                span.set_status(Status(StatusCode.ERROR, str(error).splitlines()[0][:200]))
            span.end(end_time=end_ns)

    async def _beat(self) -> None:
        for item in (*self._inflight, *self._pending):
            with contextlib.suppress(Exception):
                await item.msg.in_progress()

    async def _tick(self) -> None:
        step = min(max(self.flush_interval_s / 4, 0.05), 1.0)
        while True:
            await asyncio.sleep(step)
            now = time.monotonic()
            if (
                self._pending or self._inflight
            ) and now - self._last_beat >= self.spec.ack_wait_s / 3:
                self._last_beat = now
                await self._beat()
            if self._pending and now - self._oldest >= self.flush_interval_s:
                try:
                    await self.flush()
                except Exception:
                    log.exception("timed flush failed")

    def start(self) -> None:
        self._timer = asyncio.create_task(self._tick(), name=f"flush-{self.spec.durable}")

    async def close(self) -> None:
        """Stop the timer and store what is buffered; later messages are NAKed back."""
        if self._timer is not None:
            self._timer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._timer
            self._timer = None
        self._closed = True
        await self.flush()
