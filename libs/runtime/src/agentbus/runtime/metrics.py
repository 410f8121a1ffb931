"""Prometheus metrics shared by the services, defined once so names and labels stay consistent.

Each service has its own `CollectorRegistry` (see `service.new_service`); these classes register
their metrics in the registry they are given. Every name is prefixed `agentbus_` and every label
is bounded (assistant, model, status, stage, stream, consumer — never a run or document id).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Iterator, Sequence
from typing import Any, TypeVar

from nats.js.client import JetStreamContext
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from agentbus.contracts.streams import ConsumerSpec

from .tasks import cancel_and_wait

log = logging.getLogger("agentbus.metrics")

T = TypeVar("T")

# Runs last from milliseconds (echo) to minutes (multi-step agents with remote models).
RUN_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
STAGE_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)


class RunMetrics:
    """Runs and model calls, recorded by the orchestrator."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.runs = Counter(
            "agentbus_runs", "Runs finished, by assistant and final status",
            ["assistant", "status"], registry=registry,
        )  # fmt: skip
        self.duration = Histogram(
            "agentbus_run_duration_seconds", "Wall time of a run, by assistant and final status",
            ["assistant", "status"], buckets=RUN_BUCKETS, registry=registry,
        )  # fmt: skip
        self.active = Gauge(
            "agentbus_active_runs", "Runs executing in this process now", ["assistant"],
            registry=registry,
        )  # fmt: skip
        self.tokens = Counter(
            "agentbus_llm_tokens", "Model tokens, by model and type (input, output)",
            ["model", "type"], registry=registry,
        )  # fmt: skip
        self.cost = Counter(
            "agentbus_llm_cost_usd", "Model cost in US dollars, by model", ["model"],
            registry=registry,
        )  # fmt: skip
        self.calls = Counter(
            "agentbus_llm_calls", "Model calls, by model", ["model"], registry=registry
        )
        self.latency = Histogram(
            "agentbus_llm_call_duration_seconds", "Wall time of a model call, by model",
            ["model"], buckets=STAGE_BUCKETS, registry=registry,
        )  # fmt: skip
        self.cache_hits = Counter(
            "agentbus_llm_cache_hits", "Model calls answered by the response cache, by kind",
            ["kind"], registry=registry,
        )  # fmt: skip
        self.fallbacks = Counter(
            "agentbus_llm_fallbacks", "Model calls served by a fallback group, by group asked",
            ["model"], registry=registry,
        )  # fmt: skip

    @contextlib.contextmanager
    def running(self, assistant: str) -> Iterator[None]:
        """Counts the run as active for the duration of the block."""
        gauge = self.active.labels(assistant)
        gauge.inc()
        try:
            yield
        finally:
            gauge.dec()

    def finished(self, assistant: str, status: str, seconds: float) -> None:
        self.runs.labels(assistant, status).inc()
        self.duration.labels(assistant, status).observe(seconds)

    def model_call(
        self,
        model: str,
        input_tokens: int,
        output_tokens: int,
        cost_usd: float,
        seconds: float,
        *,
        cache_hit: str | None = None,
        fallback: bool = False,
    ) -> None:
        model = model or "unknown"
        if cache_hit:
            self.cache_hits.labels(cache_hit).inc()
        if fallback:
            self.fallbacks.labels(model).inc()
        self.calls.labels(model).inc()
        self.tokens.labels(model, "input").inc(max(0, input_tokens))
        self.tokens.labels(model, "output").inc(max(0, output_tokens))
        self.cost.labels(model).inc(max(0.0, cost_usd))
        self.latency.labels(model).observe(max(0.0, seconds))


class StreamMetrics:
    """Server-Sent Event streams held open by the gateway."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.open = Gauge(
            "agentbus_sse_streams_open", "Server-Sent Event streams open now, by kind", ["kind"],
            registry=registry,
        )  # fmt: skip

    async def track(self, kind: str, body: AsyncIterator[T]) -> AsyncGenerator[T, None]:
        """`body`, counted as an open stream until it ends or the client goes away."""
        gauge = self.open.labels(kind)
        gauge.inc()
        try:
            async for item in body:
                yield item
        finally:
            gauge.dec()


class StageMetrics:
    """Duration of each ingest stage (fetch, parse, chunk, embed, store, graph)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.duration = Histogram(
            "agentbus_ingest_stage_duration_seconds", "Wall time of one ingest stage of a document",
            ["stage"], buckets=STAGE_BUCKETS, registry=registry,
        )  # fmt: skip

    @contextlib.contextmanager
    def time(self, stage: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.duration.labels(stage).observe(time.perf_counter() - started)


class QueueLag:
    """Samples JetStream consumer info for the durable consumers a service binds.

    `agentbus_consumer_pending_messages` is the queue lag (messages in the stream not yet
    delivered to the consumer, JetStream's `num_pending`); the ack-pending gauge is work
    delivered but not yet acknowledged. Sampled every `interval_s` by a background task, so a
    scrape never waits on NATS.
    """

    def __init__(
        self,
        registry: CollectorRegistry,
        js: JetStreamContext,
        consumers: Sequence[ConsumerSpec],
        interval_s: float = 5.0,
    ) -> None:
        self.js = js
        self.consumers = tuple(consumers)
        self.interval_s = interval_s
        self.pending = Gauge(
            "agentbus_consumer_pending_messages",
            "Messages in the stream not yet delivered to the durable consumer (queue lag)",
            ["stream", "consumer"], registry=registry,
        )  # fmt: skip
        self.ack_pending = Gauge(
            "agentbus_consumer_ack_pending_messages",
            "Messages delivered to the durable consumer and not yet acknowledged",
            ["stream", "consumer"], registry=registry,
        )  # fmt: skip
        self._task: asyncio.Task[Any] | None = None

    async def sample(self) -> None:
        for spec in self.consumers:
            try:
                info = await self.js.consumer_info(spec.stream, spec.durable)
            except Exception as exc:  # NATS away or consumer gone: keep the last value
                log.debug("consumer info failed", extra={"consumer": spec.durable, "err": exc})
                continue
            self.pending.labels(spec.stream, spec.durable).set(info.num_pending or 0)
            self.ack_pending.labels(spec.stream, spec.durable).set(info.num_ack_pending or 0)

    async def _loop(self) -> None:
        while True:
            await self.sample()
            await asyncio.sleep(self.interval_s)

    def start(self) -> None:
        if self.consumers and self._task is None:
            self._task = asyncio.create_task(self._loop(), name="queue-lag")

    async def stop(self) -> None:
        if self._task is not None:
            await cancel_and_wait(self._task)
            self._task = None
