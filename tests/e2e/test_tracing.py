"""One trace per request across every service, `agentbus traces`, and /metrics on every service.

Runs over the real platform (file span exporter under the platform's data dir). Span files are
written by each service's batch processor about once a second, so the test polls the files until
the run's trace is complete rather than sleeping a fixed time.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span
from prometheus_client.parser import text_string_to_metric_families

from agentbus.runtime import trace_view as tv
from agentbus.runtime.engines import free_port
from agentbus.runtime.platform import Platform

pytestmark = pytest.mark.e2e

QUESTION = "How do we roll back a release when a deployment goes wrong?"


def dev_key(platform: Platform) -> str:
    return (platform.data_dir / "dev-api-key").read_text().strip()


async def ask(platform: Platform, question: str = QUESTION) -> str:
    """A chat question through the gateway, streamed as a browser would; returns the run id."""
    async with (
        httpx.AsyncClient(
            base_url=platform.gateway_url, headers={"x-api-key": dev_key(platform)}, timeout=120
        ) as http,
        http.stream("POST", "/api/v1/chat/stream", json={"message": question}) as response,
    ):
        body = (await response.aread()).decode()
    assert response.status_code == 200, body
    start = next(block for block in body.split("\n\n") if "event: stream_start" in block)
    data = json.loads(start.split("data: ", 1)[1])
    run_id: str = data["run_id"]
    assert "event: response" in body
    return run_id


def complete(trace: tv.Trace, services: set[str]) -> bool:
    roots = [n for n in trace.roots if not n.orphan]
    return (
        not trace.orphans
        and len(roots) == 1
        and roots[0].span.service == "gateway"
        and services <= set(trace.services)
        # The LLM usage telemetry has reached analytics and been stored.
        and any(s.name.startswith("clickhouse.insert") for s in trace.spans)
    )


async def wait_for_trace(
    platform: Platform, run_id: str, timeout: float = 60, services: set[str] | None = None
) -> tv.Trace:
    """The run's trace once every service's spans are in the files, with no orphan left."""
    wanted = services or {"gateway", "orchestrator", "retrieval", "analytics"}
    deadline = time.monotonic() + timeout
    found: tv.Trace | None = None
    while time.monotonic() < deadline:
        try:
            spans = tv.load_spans(platform.data_dir / "traces")
            traces = tv.find_run(spans, run_id)
        except tv.TraceViewError:
            traces = []
        if traces:
            found = traces[0]
            if complete(found, wanted):
                return found
        await asyncio.sleep(0.5)
    shown = tv.render(found) if found else "no span of the run at all"
    raise AssertionError(f"trace of run {run_id} incomplete after {timeout}s:\n{shown}")


async def agentbus(platform: Platform, *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI as a subprocess against the platform's data dir, as a newcomer runs it."""
    env = {**os.environ, "AGENTBUS_DATA_DIR": str(platform.data_dir)}
    command = [sys.executable, "-m", "agentbus.runtime.cli", *args]
    return await asyncio.to_thread(
        subprocess.run, command, capture_output=True, text=True, env=env, timeout=60
    )


def attrs_of(trace: tv.Trace, prefix: str) -> list[dict[str, Any]]:
    return [s.attributes for s in trace.spans if s.name.startswith(prefix)]


async def test_a_chat_question_is_one_trace_across_every_service(platform: Platform) -> None:
    run_id = await ask(platform)
    trace = await wait_for_trace(platform, run_id)
    # Analytics inserts usage and the finished run in separate batches: wait for both.
    for _ in range(120):
        names = {s.name for s in trace.spans}
        if {"clickhouse.insert llm_usage", "clickhouse.insert runs"} <= names:
            break
        await asyncio.sleep(0.5)
        trace = await wait_for_trace(platform, run_id)

    # The gateway's HTTP span is the one root; every other span hangs below it.
    root = trace.roots[0].span
    assert root.kind == tv.SERVER and root.attributes.get("agentbus.run_id") == run_id
    ids = {s.span_id for s in trace.spans}
    assert all(s.parent_id in ids for s in trace.spans if s is not root)
    by_id = {s.span_id: s for s in trace.spans}

    def parent(span: tv.Span) -> tv.Span:
        assert span.parent_id is not None
        return by_id[span.parent_id]

    names = [s.name for s in trace.spans]
    # gateway -> orchestrator over the RUNS queue: the consume span is the publish span's child.
    consume = next(s for s in trace.spans if s.name == "agentbus.v1.runs.submit process")
    assert consume.service == "orchestrator"
    assert parent(consume).name == "agentbus.v1.runs.submit publish"
    assert parent(consume).service == "gateway"
    # A span per LangGraph node, the LLM calls inside the supervisor node and inside the
    # specialist subgraph's model node (`agent`), whose `tools` node runs the tools.
    assert {"node supervisor", "node agent", "node tools"} <= set(names)
    llm = [s for s in trace.spans if s.name.startswith("chat ")]
    assert llm and {parent(s).name for s in llm} == {"node supervisor", "node agent"}
    for span in llm:
        a = span.attributes
        assert a["gen_ai.operation.name"] == "chat"
        assert a["gen_ai.request.model"] == "fast"
        assert a["gen_ai.provider.name"] and a["gen_ai.response.model"]
        assert a["gen_ai.usage.input_tokens"] > 0 and a["gen_ai.usage.output_tokens"] > 0
    # The tool's request reaches retrieval in the same trace; its database work is spans there.
    search = next(s for s in trace.spans if s.name == "agentbus.v1.retrieval.search process")
    assert search.service == "retrieval"
    assert parent(search).name == "agentbus.v1.retrieval.search request"
    assert parent(parent(search)).name == "execute_tool search_documents"
    db = [s for s in trace.spans if s.attributes.get("db.system.name") == "postgresql"]
    assert db and all(s.service == "retrieval" for s in db)
    assert db[0].attributes["db.operation.name"] == "SELECT"
    assert attrs_of(trace, "embeddings ")[0]["gen_ai.operation.name"] == "embeddings"

    # Telemetry published by the orchestrator carries the context: analytics joins the trace.
    # (Analytics takes whole fetches, so its insert span may hang straight below the publish.)
    def ancestors(span: tv.Span) -> list[str]:
        names = []
        while span.parent_id is not None:
            span = parent(span)
            names.append(span.name)
        return names

    inserts = [s for s in trace.spans if s.name == "clickhouse.insert llm_usage"]
    assert inserts and all(s.service == "analytics" for s in inserts)
    assert all("agentbus.v1.telemetry.llm_usage publish" in ancestors(s) for s in inserts)
    runs = next(s for s in trace.spans if s.name == "clickhouse.insert runs")
    assert "agentbus.v1.telemetry.run_finished publish" in ancestors(runs)
    assert not [s for s in trace.spans if s.error], tv.render(trace)

    # `agentbus traces --last` prints it, from the platform's data dir, as a newcomer would.
    last = await agentbus(platform, "traces", "--last")
    print(last.stdout)  # shown by pytest -rP: the tree a newcomer sees
    assert last.returncode == 0, last.stderr
    assert last.stdout.startswith(f"trace {trace.trace_id}")
    for expected in ("[gateway]", "[orchestrator]", "[retrieval]", "[analytics]", "node tools"):
        assert expected in last.stdout
    assert "gen_ai.request.model=fast" in last.stdout and "ORPHAN" not in last.stdout
    by_run = await agentbus(platform, "traces", "--run", run_id, "--json")
    assert json.loads(by_run.stdout)["trace_id"] == trace.trace_id
    unknown = await agentbus(platform, "traces", "0" * 32)
    assert unknown.returncode == 1 and f"no trace {'0' * 32}" in unknown.stderr


async def test_a_graph_question_traces_the_graph_query(platform: Platform) -> None:
    run_id = await ask(platform, "Who knows Rust?")
    trace = await wait_for_trace(platform, run_id, services={"gateway", "orchestrator"})
    deadline = time.monotonic() + 30
    while not any(s.name.startswith("graph.query ") for s in trace.spans):
        assert time.monotonic() < deadline, tv.render(trace)
        await asyncio.sleep(0.5)
        trace = await wait_for_trace(platform, run_id, services={"gateway", "orchestrator"})
    query = next(s for s in trace.spans if s.name == "graph.query people_by_skill")
    assert query.service == "retrieval"
    assert query.attributes["db.operation.name"] == "MATCH"
    assert query.attributes["db.system.name"] in {"neo4j", "falkordb"}
    ids = {s.span_id: s for s in trace.spans}
    assert query.parent_id is not None
    assert ids[query.parent_id].name == "agentbus.v1.graph.query process"


RUNBOOK = """Rolling back a release

When a deployment goes wrong, run deployctl rollback --to previous from the release host, then
confirm the rollback in the release dashboard and open an incident ticket.
"""


async def test_an_upload_is_one_trace_through_ingest(platform: Platform) -> None:
    async with httpx.AsyncClient(
        base_url=platform.gateway_url, headers={"x-api-key": dev_key(platform)}, timeout=60
    ) as http:
        response = await http.post(
            "/api/v1/documents", files={"file": ("tracing-runbook.md", RUNBOOK, "text/markdown")}
        )
    assert response.status_code == 202, response.text
    document_id = response.json()["document_id"]
    stages = {"ingest fetch", "ingest parse", "ingest chunk", "ingest embed", "ingest graph"}
    deadline = time.monotonic() + 60
    trace: tv.Trace | None = None
    while time.monotonic() < deadline:
        spans = tv.load_spans(platform.data_dir / "traces")
        ids = {s.trace_id for s in spans if s.attributes.get("agentbus.document_id") == document_id}
        if ids:
            trace = tv.build(ids.pop(), spans)
            names = {s.name for s in trace.spans}
            roots = [n.span for n in trace.roots]
            if stages <= names and not trace.orphans and [r.service for r in roots] == ["gateway"]:
                break
        await asyncio.sleep(0.5)
    else:
        raise AssertionError(tv.render(trace) if trace else "no span of the upload")
    assert trace.roots[0].span.name == "POST /api/v1/documents"
    process = next(
        s
        for s in trace.spans
        if s.name.startswith("agentbus.v1.ingest.submit.") and s.name.endswith(" process")
    )
    assert process.service == "ingest"
    async with httpx.AsyncClient(timeout=10) as http:
        ingest = (await http.get(f"http://127.0.0.1:{platform.ops_ports['ingest']}/metrics")).text
    found = samples(ingest)
    for stage in ("fetch", "parse", "chunk", "embed", "store", "graph"):
        assert value(found, "agentbus_ingest_stage_duration_seconds_count", stage=stage) >= 1


def logs_of(platform: Platform, service: str, run_id: str) -> list[dict[str, Any]]:
    out = []
    for line in (platform.data_dir / "logs" / f"{service}.log").read_text().splitlines():
        if run_id in line:
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
    return out


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def samples(text: str) -> Samples:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(found: Samples, name: str, **labels: str) -> float:
    key = (name, frozenset(labels.items()))
    assert key in found, f"{name}{labels} not exported"
    return found[key]


async def test_every_service_serves_its_metrics_after_a_run(platform: Platform) -> None:
    run_id = await ask(platform)
    await wait_for_trace(platform, run_id)
    async with httpx.AsyncClient(timeout=10) as http:

        async def metrics(service: str) -> str:
            url = (
                f"{platform.gateway_url}/metrics/"
                if service == "gateway"
                else f"http://127.0.0.1:{platform.ops_ports[service]}/metrics"
            )
            response = await http.get(url)
            assert response.status_code == 200, (service, response.text[:200])
            return response.text

        gateway = samples(await metrics("gateway"))
        assert value(gateway, "agentbus_sse_streams_open", kind="chat") == 0  # all closed again

        text = await metrics("orchestrator")
        assert run_id not in text  # labels stay bounded
        orch = samples(text)
        run = {"assistant": "agent", "status": "success"}
        assert value(orch, "agentbus_runs_total", **run) >= 1
        assert value(orch, "agentbus_run_duration_seconds_count", **run) >= 1
        assert value(orch, "agentbus_run_duration_seconds_sum", **run) > 0
        assert value(orch, "agentbus_active_runs", assistant="agent") == 0
        model = "local/extractive"
        assert value(orch, "agentbus_llm_tokens_total", model=model, type="input") > 0
        assert value(orch, "agentbus_llm_tokens_total", model=model, type="output") > 0
        assert value(orch, "agentbus_llm_cost_usd_total", model=model) >= 0
        lag = {"stream": "RUNS", "consumer": "orchestrator"}
        assert value(orch, "agentbus_consumer_pending_messages", **lag) >= 0
        assert "agentbus_rejected_messages_total" in text

        ingest = await metrics("ingest")
        assert "# TYPE agentbus_ingest_stage_duration_seconds histogram" in ingest
        lag = {"stream": "INGEST", "consumer": "ingest"}
        assert value(samples(ingest), "agentbus_consumer_pending_messages", **lag) >= 0
        analytics = samples(await metrics("analytics"))
        lag = {"stream": "TELEMETRY", "consumer": "analytics-telemetry"}
        assert value(analytics, "agentbus_consumer_pending_messages", **lag) >= 0
        assert "agentbus_rejected_messages_total" in await metrics("retrieval")

    # Logs of the run carry its trace, span, run and tenant ids.
    lines = logs_of(platform, "orchestrator", run_id)
    tagged = [e for e in lines if e.get("run_id") == run_id]
    assert tagged, "no orchestrator log line tagged with the run"
    assert all(e.get("tenant_id") == "dev" and len(e.get("trace_id", "")) == 32 for e in tagged)
    assert all(len(e.get("span_id", "")) == 16 for e in tagged)


# -- the same trace over OTLP --------------------------------------------------------------------


class Collector:
    """A minimal OTLP/HTTP trace receiver: keeps every span it is sent, as trace_view spans."""

    def __init__(self) -> None:
        self.spans: list[tv.Span] = []
        self.lock = threading.Lock()
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # http.server calls do_<METHOD>
                body = self.rfile.read(int(self.headers["Content-Length"]))
                request = ExportTraceServiceRequest.FromString(body)
                with collector.lock:
                    collector.spans.extend(tv.parse_request(otlp_json(request)))
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_: object) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def snapshot(self) -> list[tv.Span]:
        with self.lock:
            return list(self.spans)


def _value(v: AnyValue) -> dict[str, Any]:
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return {"arrayValue": {"values": [_value(x) for x in v.array_value.values]}}
    if kind == "int_value":
        return {"intValue": str(v.int_value)}
    names = {"string_value": "stringValue", "bool_value": "boolValue"}
    names["double_value"] = "doubleValue"
    return {names[kind]: getattr(v, kind)} if kind in names else {}


def _attrs(items: Iterable[KeyValue]) -> list[dict[str, Any]]:
    return [{"key": kv.key, "value": _value(kv.value)} for kv in items]


def _span(sp: Span) -> dict[str, Any]:
    out: dict[str, Any] = {
        "traceId": sp.trace_id.hex(),
        "spanId": sp.span_id.hex(),
        "name": sp.name,
        "kind": int(sp.kind),
        "startTimeUnixNano": str(sp.start_time_unix_nano),
        "endTimeUnixNano": str(sp.end_time_unix_nano),
        "attributes": _attrs(sp.attributes),
        "status": {"code": int(sp.status.code), "message": sp.status.message},
    }
    if sp.parent_span_id:
        out["parentSpanId"] = sp.parent_span_id.hex()
    return out


def otlp_json(request: ExportTraceServiceRequest) -> dict[str, Any]:
    """The protobuf request in the OTLP/JSON encoding (ids as hex, as the span files hold)."""
    return {
        "resourceSpans": [
            {
                "resource": {"attributes": _attrs(rs.resource.attributes)},
                "scopeSpans": [{"spans": [_span(sp) for sp in ss.spans]} for ss in rs.scope_spans],
            }
            for rs in request.resource_spans
        ]
    }


@pytest.fixture(scope="module")
def otlp_platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Platform, Collector]]:
    """A second platform whose services export to an OTLP collector instead of span files."""
    collector = Collector()
    root = tmp_path_factory.mktemp("otlp-platform")
    plat = Platform(
        root / "var",
        gateway_port=free_port(),
        extra_env={
            "OTEL_EXPORTER_OTLP_ENDPOINT": collector.url,
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        },
    )
    plat.start(timeout=180)
    try:
        yield plat, collector
    finally:
        plat.stop()
        collector.server.shutdown()


async def test_the_same_trace_reaches_an_otlp_collector(
    otlp_platform: tuple[Platform, Collector],
) -> None:
    platform, collector = otlp_platform
    run_id = await ask(platform)
    wanted = {"gateway", "orchestrator", "retrieval", "analytics"}
    deadline = time.monotonic() + 60
    trace: tv.Trace | None = None
    while time.monotonic() < deadline:
        spans = collector.snapshot()
        with_run = {s.trace_id for s in spans if s.attributes.get("agentbus.run_id") == run_id}
        if with_run:
            trace = tv.build(with_run.pop(), spans)
            if complete(trace, wanted):
                break
        await asyncio.sleep(0.5)
    else:
        raise AssertionError(tv.render(trace) if trace else "the collector got no span of the run")
    assert trace.roots[0].span.name == "POST /api/v1/chat/stream"
    names = {s.name for s in trace.spans}
    assert {"node supervisor", "node tools", "agentbus.v1.retrieval.search process"} <= names
    llm = [s for s in trace.spans if s.name.startswith("chat ")]
    assert llm and all(s.attributes["gen_ai.usage.output_tokens"] > 0 for s in llm)
    # Nothing went to the span files: OTLP replaces them.
    files = await asyncio.to_thread(lambda: list((platform.data_dir / "traces").glob("*.jsonl")))
    assert not files
