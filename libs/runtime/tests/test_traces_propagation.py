"""Trace context over real NATS, the OTLP exporter, and the shared metrics."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import nats
import pytest
from faststream.nats import NatsBroker
from faststream.nats.opentelemetry import NatsTelemetryMiddleware
from nats.js import api as js_api
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry

from agentbus.contracts import RunRequested, new_id
from agentbus.contracts import subjects as s
from agentbus.contracts.streams import ConsumerSpec
from agentbus.runtime.metrics import QueueLag, RunMetrics, StreamMetrics
from agentbus.runtime.provisioning import provision
from agentbus.runtime.testing import memory_spans
from agentbus.runtime.thread_runs import ThreadRunsKV
from agentbus.runtime.traces import (
    JsonLinesSpanExporter,
    encode,
    make_exporter,
    nats_span,
    tracer,
)


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Spans our code creates through the global provider (installed once per process)."""
    yield memory_spans()


def _hex(span: ReadableSpan) -> tuple[str, str, str | None]:
    ctx = span.get_span_context()
    assert ctx is not None
    parent = format(span.parent.span_id, "016x") if span.parent else None
    return format(ctx.trace_id, "032x"), format(ctx.span_id, "016x"), parent


def _named(exporter: InMemorySpanExporter, name: str) -> ReadableSpan:
    found = [sp for sp in exporter.get_finished_spans() if sp.name == name]
    assert found, f"no span {name!r} in {[sp.name for sp in exporter.get_finished_spans()]}"
    return found[-1]


async def test_a_raw_request_continues_in_the_faststream_consumer(
    nats_url: str, spans: InMemorySpanExporter
) -> None:
    subject = f"tracing.test.{uuid.uuid4().hex}"
    broker = NatsBroker(
        nats_url,
        middlewares=(NatsTelemetryMiddleware(tracer_provider=trace.get_tracer_provider()),),
    )

    @broker.subscriber(subject)
    async def echo(body: str) -> str:
        return body.upper()

    await broker.start()
    nc = await nats.connect(nats_url)
    try:
        with (
            tracer().start_as_current_span("caller"),
            nats_span(subject, "request") as headers,
        ):
            reply = await nc.request(subject, b"hi", timeout=5, headers=headers)
    finally:
        await nc.close()
        await broker.stop()
    assert reply.data == b"HI"
    assert "traceparent" in headers
    caller = _hex(_named(spans, "caller"))
    request = _named(spans, f"{subject} request")
    process = _named(spans, f"{subject} process")
    assert request.kind == trace.SpanKind.CLIENT
    assert request.attributes is not None
    assert request.attributes["messaging.system"] == "nats"
    assert _hex(request)[2] == caller[1]  # the request span is the caller's child
    assert _hex(process)[0] == caller[0]  # the consumer is in the same trace...
    assert _hex(process)[2] == _hex(request)[1]  # ...as the request span's child


async def test_a_queued_run_joins_the_trace_of_the_request_that_queued_it(
    nats_url: str, spans: InMemorySpanExporter
) -> None:
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        await provision(js)
        kv = await ThreadRunsKV.open(js)
        thread = new_id()

        def run() -> RunRequested:
            return RunRequested(tenant_id="t1", run_id=new_id(), thread_id=thread)

        async def never_stale(_: object) -> bool:
            return False

        first, second = run(), run()
        with tracer().start_as_current_span("request one"):
            assert (await kv.admit(first, "enqueue", never_stale)).outcome == "started"
        with tracer().start_as_current_span("request two") as two:
            assert (await kv.admit(second, "enqueue", never_stale)).outcome == "queued"
        # The orchestrator releases the first run inside the first run's own trace.
        with tracer().start_as_current_span("first run ends"):
            released = await kv.release("t1", thread, first.run_id)
        assert released is not None and released.run_id == second.run_id
        msg = await js.get_last_msg("RUNS", s.RUNS_SUBMIT)
        assert RunRequested.model_validate_json(msg.data or b"").run_id == second.run_id
        traceparent = (msg.headers or {})["traceparent"]
        two_trace = format(two.get_span_context().trace_id, "032x")
        assert traceparent.split("-")[1] == two_trace
        # Nothing of the released run's trace context is kept once it is published.
        value, _ = await kv.read("t1", thread)
        assert value.traces == {}
        await kv.release("t1", thread, second.run_id)
    finally:
        await nc.close()


class _Collector(BaseHTTPRequestHandler):
    received: list[tuple[str, bytes]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _Collector.received.append((self.path, body))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.end_headers()
        self.wfile.write(b"")

    def log_message(self, *_: object) -> None:
        return None


def test_otlp_export_carries_the_same_spans_as_the_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = HTTPServer(("127.0.0.1", 0), _Collector)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{server.server_port}")
        otlp = make_exporter("gateway", tmp_path)
        assert isinstance(otlp, OTLPSpanExporter)
        monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT")
        assert isinstance(make_exporter("gateway", tmp_path), JsonLinesSpanExporter)

        memory = InMemorySpanExporter()
        provider = TracerProvider(resource=Resource.create({"service.name": "agentbus-gateway"}))
        provider.add_span_processor(SimpleSpanProcessor(memory))
        with (
            provider.get_tracer("t").start_as_current_span("root"),
            provider.get_tracer("t").start_as_current_span(
                "chat fast", attributes={"gen_ai.usage.input_tokens": 7}
            ),
        ):
            pass
        finished = memory.get_finished_spans()
        otlp.export(finished)
    finally:
        server.shutdown()
    path, body = _Collector.received[-1]
    assert path == "/v1/traces"
    sent = ExportTraceServiceRequest.FromString(body)
    over_otlp = {
        sp.span_id.hex(): (sp.trace_id.hex(), sp.parent_span_id.hex() or None, sp.name)
        for rs in sent.resource_spans
        for ss in rs.scope_spans
        for sp in ss.spans
    }
    in_files = {
        sp["spanId"]: (sp["traceId"], sp.get("parentSpanId"), sp["name"])
        for rs in encode(finished)["resourceSpans"]
        for ss in rs["scopeSpans"]
        for sp in ss["spans"]
    }
    assert over_otlp == in_files and len(in_files) == 2


async def test_queue_lag_samples_pending_messages_of_a_durable(nats_url: str) -> None:
    nc = await nats.connect(nats_url)
    stream = f"LAGTEST{uuid.uuid4().hex[:8].upper()}"
    try:
        js = nc.jetstream()
        await js.add_stream(name=stream, subjects=[f"{stream.lower()}.>"])
        await js.add_consumer(
            stream,
            js_api.ConsumerConfig(durable_name="worker", ack_policy=js_api.AckPolicy.EXPLICIT),
        )
        for i in range(3):
            await js.publish(f"{stream.lower()}.x", str(i).encode())
        registry = CollectorRegistry()
        spec = ConsumerSpec(
            stream=stream,
            durable="worker",
            service="ingest",
            filter_subject=f"{stream.lower()}.>",
            ack_wait_s=30,
            max_deliver=3,
        )
        lag = QueueLag(registry, js, [spec], interval_s=0.05)
        lag.start()
        labels = {"stream": stream, "consumer": "worker"}
        for _ in range(100):
            if registry.get_sample_value("agentbus_consumer_pending_messages", labels) == 3:
                break
            await asyncio.sleep(0.05)
        assert registry.get_sample_value("agentbus_consumer_pending_messages", labels) == 3
        assert registry.get_sample_value("agentbus_consumer_ack_pending_messages", labels) == 0
        # A consumer that is gone keeps its last value; the sampler keeps running.
        await js.delete_consumer(stream, "worker")
        await lag.sample()
        assert registry.get_sample_value("agentbus_consumer_pending_messages", labels) == 3
        await lag.stop()
    finally:
        await nc.close()


async def test_stream_gauge_drops_when_a_client_goes_away() -> None:
    registry = CollectorRegistry()
    metrics = StreamMetrics(registry)

    async def body() -> AsyncIterator[bytes]:
        while True:
            yield b"data: x\n\n"
            await asyncio.sleep(0)

    stream = metrics.track("chat", body())
    await anext(stream)
    assert registry.get_sample_value("agentbus_sse_streams_open", {"kind": "chat"}) == 1
    await stream.aclose()  # what the server does when the client disconnects
    assert registry.get_sample_value("agentbus_sse_streams_open", {"kind": "chat"}) == 0


def test_run_metrics_count_by_bounded_labels() -> None:
    registry = CollectorRegistry()
    metrics = RunMetrics(registry)
    with metrics.running("agent"):
        assert registry.get_sample_value("agentbus_active_runs", {"assistant": "agent"}) == 1
    metrics.finished("agent", "success", 0.2)
    metrics.model_call("local/extractive", 10, 4, 0.001, 0.05)
    metrics.model_call("", 1, 1, 0.0, 0.01)  # no model known: one `unknown` series
    assert registry.get_sample_value("agentbus_active_runs", {"assistant": "agent"}) == 0
    get = registry.get_sample_value
    assert get("agentbus_runs_total", {"assistant": "agent", "status": "success"}) == 1
    tokens = {"model": "local/extractive", "type": "output"}
    assert get("agentbus_llm_tokens_total", tokens) == 4
    assert get("agentbus_llm_cost_usd_total", {"model": "local/extractive"}) == 0.001
    assert get("agentbus_llm_calls_total", {"model": "unknown"}) == 1
