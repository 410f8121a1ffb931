"""Buffer decoded messages as rows; insert them in batches; ack only what was stored.

The handlers hand over (table, row, message) and return without acking. The buffer goes to
an insert when it reaches `batch_size` rows or when its oldest row is `flush_interval_s` old (a
timer task). The insert runs in the background (chDB's work in a thread, without the GIL) while
the handler returns and the next fetch is decoded; rows that fill up meanwhile go together into
the next insert, up to `max_insert_rows`, and a buffer at that cap waits for the running insert
(that wait holds back the next fetch). One insert runs at a time. After an insert succeeds its
messages are acked (one write for all); after it fails they are NAKed with the consumer's
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
from collections.abc import Sequence
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


@dataclass(slots=True)
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


async def ack_all(msgs: list[Msg]) -> None:
    """Ack JetStream messages (AckExplicit: one ack each) with one write for all of them.

    An ack is an empty publish to the message's reply subject, which is what `Msg.ack` sends;
    nats-py builds, checks and queues it per message, which at tens of thousands a second
    costs more than the rest of the ack path. Here the PUB lines are joined into one command
    for the client's write buffer (nats-py 2.x `_send_command`; queued while reconnecting as a
    publish is). Without that method, or while disconnected, each is acked with `Msg.ack`.
    """
    if not msgs:
        return
    nc = msgs[0]._client
    send = getattr(nc, "_send_command", None)
    flush = getattr(nc, "_flush_pending", None)
    if send is not None and flush is not None and nc.is_connected:
        lines = []
        for msg in msgs:
            if msg.reply and not msg._ackd:
                lines.append(b"PUB " + msg.reply.encode() + b" 0\r\n\r\n")
                msg._ackd = True
        if lines:
            with contextlib.suppress(Exception):
                await send(b"".join(lines))
                await flush()
        return
    for msg in msgs:
        with contextlib.suppress(Exception):
            await msg.ack()


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
    # While an insert runs, the buffer may grow to this many rows for the next insert
    # (batch_size if this is smaller).
    max_insert_rows: int = 0
    _pending: list[Pending] = field(default_factory=list)
    _inflight: list[list[Pending]] = field(default_factory=list)  # taken, being stored
    _oldest: float = 0.0
    _last_beat: float = 0.0
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _closed: bool = False
    _timer: asyncio.Task[None] | None = None
    _background: asyncio.Task[None] | None = None  # inserting, one buffer after another
    _progress: asyncio.Event = field(default_factory=asyncio.Event)  # set after each insert

    @property
    def pending(self) -> int:
        return len(self._pending)

    async def add(self, table: str, row: Row, msg: Msg) -> None:
        await self.add_all([(table, row, msg)])

    async def add_all(self, items: Sequence[tuple[str, Row, Msg]]) -> None:
        """Buffer decoded messages; a full buffer goes to its insert in the background."""
        pending = self._pending
        for n, (table, row, msg) in enumerate(items):
            if self._closed:
                # Shutting down after the last flush: hand them back now, not after ack_wait.
                for _, _, late in items[n:]:
                    with contextlib.suppress(Exception):
                        await late.nak()
                break
            if not pending:
                self._oldest = self._last_beat = time.monotonic()
            headers = msg.headers
            parent = trace_context(msg) if headers and "traceparent" in headers else None
            pending.append(Pending(table, row, msg, parent))
            if len(pending) >= self.batch_size:
                await self._full()
                pending = self._pending
        self._gauge()

    @property
    def insert_cap(self) -> int:
        """The most rows one insert takes (the buffer never holds more)."""
        return max(self.max_insert_rows, self.batch_size)

    async def _full(self) -> None:
        """The buffer holds `batch_size` rows. With no insert running it goes to one now, in the
        background, while the caller goes on (the next fetch, decoding it). With one running, it
        keeps filling and goes to the next insert as soon as that one ends, all of it (up to
        `insert_cap` rows): a backlog makes fewer, larger inserts, whose cost is mostly per
        insert. A buffer at the cap waits for the running insert: that wait is what holds back
        the next fetch."""
        while self._background is not None and len(self._pending) >= self.insert_cap:
            self._progress.clear()
            await self._progress.wait()
        if self._background is None and not self._closed and len(self._pending) >= self.batch_size:
            self._background = asyncio.create_task(
                self._insert_in_background(self._take()), name=f"insert-{self.spec.durable}"
            )

    def _take(self) -> list[Pending]:
        batch, self._pending = self._pending, []
        self._inflight.append(batch)
        return batch

    async def _insert_in_background(self, batch: list[Pending]) -> None:
        """Store `batch`, then every buffer that filled up meanwhile, one insert at a time."""
        try:
            while True:
                try:
                    await self._store(batch)
                except Exception:
                    log.exception("batch insert failed unexpectedly; messages will be redelivered")
                self._progress.set()
                if self._closed or len(self._pending) < self.batch_size:
                    return
                batch = self._take()
        finally:
            if self._background is asyncio.current_task():
                self._background = None
            self._progress.set()

    async def flush(self) -> None:
        """Store everything buffered so far, after the inserts running in the background."""
        while self._background is not None:
            await asyncio.shield(self._background)
        if self._pending:
            await self._store(self._take())

    async def _store(self, batch: list[Pending]) -> None:
        """Insert one taken buffer (listed in `_inflight`), table by table, then ack or NAK."""
        try:
            async with self._lock:
                self._gauge()
                by_table: dict[str, list[Pending]] = defaultdict(list)
                for item in batch:
                    by_table[item.table].append(item)
                for table, items in by_table.items():
                    await self._insert(table, items)
        finally:
            self._inflight = [b for b in self._inflight if b is not batch]
            self._gauge()

    def _gauge(self) -> None:
        self.metrics.buffered.labels(self.spec.durable).set(
            len(self._pending) + sum(len(batch) for batch in self._inflight)
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
        # A lost ack only means a redelivery, which the table deduplicates.
        await ack_all([item.msg for item in items])

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
        for item in (*(i for batch in self._inflight for i in batch), *self._pending):
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
            # While inserts run in the background, the next one takes a full buffer; what is
            # left when they end is flushed on a later tick.
            if (
                self._pending
                and self._background is None
                and now - self._oldest >= self.flush_interval_s
            ):
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
