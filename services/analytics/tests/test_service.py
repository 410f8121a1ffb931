"""The analytics service over the real bus with embedded ClickHouse (chDB)."""

from __future__ import annotations

from pathlib import Path

import nats
import pytest
from nats.aio.client import Client as NatsClient
from opentelemetry import propagate, trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from agentbus.analytics.app import build
from agentbus.analytics.settings import AnalyticsSettings
from agentbus.contracts import CONSUMERS, LlmUsage, RunFinished
from agentbus.contracts import subjects as s
from agentbus.runtime.chassis import StartupError
from agentbus.runtime.testing import ask_health, running

from .support import as_dicts, ask, eventually


async def test_reports_clickhouse_health_and_stops(analytics_env: dict[str, str]) -> None:
    service = build(AnalyticsSettings())
    async with running(service):
        nc = await nats.connect(analytics_env["AGENTBUS_NATS_URL"])
        try:
            health = await ask_health(nc, "analytics")
            js = nc.jetstream()
            for consumer in CONSUMERS:
                if consumer.service == "analytics":
                    info = await js.consumer_info(consumer.stream, consumer.durable)
                    assert info.config.max_deliver == consumer.max_deliver
        finally:
            await nc.close()
    assert health.ok, health
    assert set(health.checks) == {"nats", "clickhouse"}
    assert "chDB (embedded)" in health.checks["clickhouse"].detail
    assert service.broker._connection is None
    chdb_dir = Path(analytics_env["AGENTBUS_DATA_DIR"]) / "clickhouse"
    assert chdb_dir.is_dir()  # data lives under the data dir


async def test_unreachable_clickhouse_server_fails_start_up(
    analytics_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from agentbus.runtime.engines import free_port

    monkeypatch.setenv("AGENTBUS_CLICKHOUSE_DSN", f"http://127.0.0.1:{free_port()}")
    service = build(AnalyticsSettings())
    with pytest.raises(StartupError, match=r"cannot open ClickHouse at http://127\.0\.0\.1"):
        async with running(service):
            pass


def _spans() -> InMemorySpanExporter:
    """Collect this process's spans in memory, whether or not a provider is installed yet."""
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return exporter


async def test_usage_totals_of_a_run_are_the_sum_of_its_calls_and_inserts_are_traced(
    analytics_env: dict[str, str], nc: NatsClient, tenant: str
) -> None:
    exporter = _spans()
    js = nc.jetstream()
    calls = [
        LlmUsage(
            tenant_id=tenant,
            run_id="run-1",
            assistant_id="agent",
            model="gpt-x" if i % 2 else "local/extractive",
            provider="openai" if i % 2 else "local",
            input_tokens=100 + i,
            output_tokens=7 * i,
            cost_usd=0.00125 * i,
            latency_ms=10.0 * (i + 1),
            ttft_ms=2.0 * (i + 1),
            streamed=True,
        )
        for i in range(9)
    ]
    other = LlmUsage(tenant_id=tenant, run_id="run-2", model="m", provider="p", input_tokens=5)
    tracer = trace.get_tracer("test")
    with tracer.start_as_current_span("publisher") as root:
        headers: dict[str, str] = {}
        propagate.inject(headers)
        for call in [*calls, other]:
            await js.publish(
                s.TELEMETRY_LLM_USAGE, call.model_dump_json().encode(), headers=headers
            )
    finished = RunFinished(
        tenant_id=tenant,
        run_id="run-1",
        thread_id="th",
        assistant_id="agent",
        status="success",
        duration_ms=1234.5,
    )
    await js.publish(s.TELEMETRY_RUN_FINISHED, finished.model_dump_json().encode())

    service = build(AnalyticsSettings())
    async with running(service):

        async def stored() -> bool:
            rows = as_dicts(await ask(nc, tenant, "usage", group_by="run", since_hours=1))
            return sum(int(str(r["calls"])) for r in rows) == 10

        await eventually(stored, what="usage rows")
        by_run = {
            r["run"]: r
            for r in as_dicts(await ask(nc, tenant, "usage", group_by="run", since_hours=1))
        }
        one = by_run["run-1"]
        assert one["calls"] == len(calls)
        assert one["input_tokens"] == sum(c.input_tokens for c in calls)
        assert one["output_tokens"] == sum(c.output_tokens for c in calls)
        assert one["total_tokens"] == sum(c.input_tokens + c.output_tokens for c in calls)
        assert one["cost_usd"] == pytest.approx(sum(c.cost_usd for c in calls))
        assert one["cost_usd"] > 0
        assert one["latency_ms_p50"] == pytest.approx(50.0)  # 10..90, median of nine
        assert one["ttft_ms_p50"] == pytest.approx(10.0)
        only = as_dicts(await ask(nc, tenant, "usage", group_by="model", run_id="run-1"))
        assert {r["model"]: r["calls"] for r in only} == {"gpt-x": 4, "local/extractive": 5}

        async def run_stored() -> bool:
            return bool(as_dicts(await ask(nc, tenant, "runs", group_by="assistant")))

        await eventually(run_stored, what="the run")
        (runs,) = as_dicts(await ask(nc, tenant, "runs", group_by="assistant"))
        assert (runs["assistant"], runs["runs"], runs["success"]) == ("agent", 1, 1)
        assert runs["duration_ms_p50"] == pytest.approx(1234.5)
        metrics = service.registry.get_sample_value(
            "agentbus_analytics_rows_inserted_total", {"table": "llm_usage"}
        )
        assert metrics is not None and metrics >= 10

    # Every stored message has a ClickHouse insert span in its own trace, under the span that
    # published it, timed with the real insert.
    spans = exporter.get_finished_spans()
    inserts = [
        sp
        for sp in spans
        if sp.name == "clickhouse.insert llm_usage"
        and sp.context.trace_id == root.get_span_context().trace_id
    ]
    assert len(inserts) == len(calls) + 1
    for span in inserts:
        assert span.attributes is not None
        assert span.attributes["db.system"] == "clickhouse"
        assert span.attributes["db.operation.name"] == "INSERT"
        assert span.attributes["db.collection.name"] == "llm_usage"
        assert span.kind == trace.SpanKind.CLIENT
        assert span.parent is not None
        assert span.parent.span_id == root.get_span_context().span_id
        assert span.start_time is not None and span.end_time is not None
        assert isinstance(root, ReadableSpan) and root.end_time is not None
        assert span.start_time > root.end_time
    queries = [sp for sp in spans if sp.name == "analytics.query usage"]
    assert queries and all(sp.parent is not None for sp in queries)


async def test_stopping_inserts_and_acks_what_is_buffered(
    analytics_env: dict[str, str],
    nc: NatsClient,
    tenant: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from agentbus.contracts import DomainEvent
    from agentbus.contracts.streams import ANALYTICS_DOMAIN_EVENTS as spec

    js = nc.jetstream()
    subject = s.domain_event(tenant, "ci", "deployment")
    monkeypatch.setenv("AGENTBUS_ANALYTICS_FLUSH_INTERVAL_S", "600")  # only SIGTERM flushes
    service = build(AnalyticsSettings())
    async with running(service):
        for _ in range(5):
            event = DomainEvent(tenant_id=tenant, source="ci", type="deployment")
            await js.publish(subject, event.model_dump_json().encode())

        async def buffered() -> bool:
            rows = service.registry.get_sample_value(
                "agentbus_analytics_buffered_rows", {"consumer": spec.durable}
            )
            return rows == 5

        await eventually(buffered, what="five events buffered, unacked")
        assert await deployments(nc, tenant) == 0  # not inserted yet
    info = await js.consumer_info(spec.stream, spec.durable)
    assert (info.num_pending, info.num_ack_pending) == (0, 0)  # acked on the way out

    monkeypatch.setenv("AGENTBUS_ANALYTICS_FLUSH_INTERVAL_S", "0.2")
    async with running(build(AnalyticsSettings())):
        assert await deployments(nc, tenant) == 5


async def deployments(nc: NatsClient, tenant: str) -> int:
    rows = as_dicts(await ask(nc, tenant, "dora", since_hours=1))
    return next((int(str(r["deployments"])) for r in rows if r["service"] == "*"), 0)
