"""`agentbus traces`: the span tree built from span files written by several services."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from opentelemetry import propagate
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind, StatusCode

from agentbus.runtime import trace_view as tv
from agentbus.runtime.traces import JsonLinesSpanExporter, subject_template


def _provider(directory: Path, service: str) -> TracerProvider:
    provider = TracerProvider(resource=Resource.create({"service.name": f"agentbus-{service}"}))
    provider.add_span_processor(SimpleSpanProcessor(JsonLinesSpanExporter(directory, service)))
    return provider


def write_request_trace(directory: Path) -> tuple[str, str]:
    """A gateway request whose trace continues in the orchestrator through NATS headers.

    Returns (trace id, span id of the orphan written into an unrelated trace).
    """
    gateway, orchestrator = _provider(directory, "gateway"), _provider(directory, "orchestrator")
    gw, orch = gateway.get_tracer("t"), orchestrator.get_tracer("t")
    with gw.start_as_current_span(
        "POST /api/v1/chat", kind=SpanKind.SERVER, attributes={"http.route": "/api/v1/chat"}
    ) as root:
        root.set_attribute("agentbus.run_id", "run1")
        with gw.start_as_current_span("agentbus.v1.runs.submit publish", kind=SpanKind.PRODUCER):
            headers: dict[str, str] = {}
            propagate.inject(headers)
    # The other process continues from the headers only, as over NATS.
    parent = propagate.extract(headers)
    with (
        orch.start_as_current_span(
            "agentbus.v1.runs.submit process", context=parent, kind=SpanKind.CONSUMER
        ),
        orch.start_as_current_span("node supervisor"),
    ):
        with orch.start_as_current_span(
            "chat fast",
            kind=SpanKind.CLIENT,
            attributes={
                "gen_ai.operation.name": "chat",
                "gen_ai.request.model": "fast",
                "gen_ai.usage.input_tokens": 12,
                "gen_ai.usage.output_tokens": 3,
            },
        ):
            pass
        for _ in range(5):  # token events: collapsed into one line
            with orch.start_as_current_span("agentbus.v1.runs.events.{run_id} publish"):
                pass
        with orch.start_as_current_span("execute_tool search_documents") as tool:
            tool.set_status(StatusCode.ERROR, "document search did not answer")
    # A span whose parent never reached a file: an orphan in a trace of its own.
    other = TracerProvider().get_tracer("lost")
    with other.start_as_current_span("lost parent"):
        lost: dict[str, str] = {}
        propagate.inject(lost)
    with orch.start_as_current_span("orphan", context=propagate.extract(lost)) as orphan:
        orphan_id = format(orphan.get_span_context().span_id, "016x")
    gateway.shutdown()
    orchestrator.shutdown()
    return format(root.get_span_context().trace_id, "032x"), orphan_id


def test_tree_links_spans_across_service_files(tmp_path: Path) -> None:
    trace_id, _ = write_request_trace(tmp_path)
    spans = tv.load_spans(tmp_path)
    trace = tv.find_trace(spans, trace_id)
    assert trace.services == ["gateway", "orchestrator"]
    assert not trace.orphans
    assert len(trace.roots) == 1 and trace.roots[0].span.name == "POST /api/v1/chat"
    publish = trace.roots[0].children[0]
    process = publish.children[0]
    assert process.span.service == "orchestrator"
    assert process.span.parent_id == publish.span.span_id
    node = process.children[0]
    assert [c.span.name for c in node.children][:2] == [
        "chat fast",
        "agentbus.v1.runs.events.{run_id} publish",
    ]
    # Found by run id and by a unique prefix too.
    assert tv.find_run(spans, "run1")[0].trace_id == trace_id
    assert tv.find_trace(spans, trace_id[:10]).trace_id == trace_id

    text = tv.render(trace)
    lines = text.splitlines()
    assert lines[0].startswith(f"trace {trace_id}  11 spans  services: gateway, orchestrator")
    assert "├─ chat fast  [orchestrator]" in text or "└─ chat fast  [orchestrator]" in text
    assert "gen_ai.request.model=fast" in text and "gen_ai.usage.output_tokens=3" in text
    assert "agentbus.v1.runs.events.{run_id} publish x5  [orchestrator]" in text
    assert "!! ERROR: document search did not answer" in text
    assert "1 span(s) with errors" in text
    # Indentation follows depth: the LLM span is four levels below the root.
    chat = next(line for line in lines if "chat fast" in line)
    assert chat.index("chat fast") == 4 * 3 + 3

    tree = tv.to_json(trace)
    assert tree["spans"] == 11 and tree["orphans"] == 0 and tree["errors"] == 1
    assert tree["tree"][0]["kind"] == "server"
    assert tree["tree"][0]["children"][0]["children"][0]["service"] == "orchestrator"


def test_orphans_are_marked(tmp_path: Path) -> None:
    _, orphan_id = write_request_trace(tmp_path)
    spans = tv.load_spans(tmp_path)
    orphan = next(s for s in spans if s.span_id == orphan_id)
    trace = tv.find_trace(spans, orphan.trace_id)
    assert [s.name for s in trace.orphans] == ["orphan"]
    text = tv.render(trace)
    assert "!! ORPHAN (parent" in text and "1 orphan span(s)" in text


def test_last_prefers_requests_and_torn_lines_are_skipped(tmp_path: Path) -> None:
    trace_id, _ = write_request_trace(tmp_path)
    # Background work after the request (no HTTP root) does not hide the last request.
    background = _provider(tmp_path, "ingest")
    with background.get_tracer("t").start_as_current_span("agentbus.v1.ingest.submit process"):
        pass
    background.shutdown()
    with (tmp_path / "ingest.jsonl").open("a") as fh:
        fh.write('{"resourceSpans": [{"scopeSpa')  # a line being written right now
    spans = tv.load_spans(tmp_path)
    assert tv.last_trace(spans).trace_id == trace_id
    listed = tv.recent(spans, 10, requests_only=False)
    assert listed[0].spans[0].service == "ingest"


def test_unknown_and_bad_ids_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(tv.TraceViewError, match="no span files in"):
        tv.load_spans(tmp_path)
    write_request_trace(tmp_path)
    spans = tv.load_spans(tmp_path)
    with pytest.raises(tv.TraceViewError, match="no trace 0123456789abcdef"):
        tv.find_trace(spans, "0123456789abcdef0123456789abcdef")
    with pytest.raises(tv.TraceViewError, match="not a trace id"):
        tv.find_trace(spans, "not-hex!")
    with pytest.raises(tv.TraceViewError, match="no span of run nope"):
        tv.find_run(spans, "nope")


def test_cli_prints_the_tree_and_reports_unknown_ids(tmp_path: Path) -> None:
    trace_id, _ = write_request_trace(tmp_path / "traces")

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "agentbus.runtime.cli", "--data-dir", str(tmp_path), *args],
            capture_output=True,
            text=True,
            timeout=60,
        )

    last = cli("traces", "--last")
    assert last.returncode == 0, last.stderr
    assert last.stdout.startswith(f"trace {trace_id}") and "chat fast" in last.stdout
    as_json = cli("traces", trace_id, "--json")
    assert json.loads(as_json.stdout)["trace_id"] == trace_id
    assert cli("traces", "--run", "run1").stdout.startswith(f"trace {trace_id}")
    unknown = cli("traces", "ffffffffffffffffffffffffffffffff")
    assert unknown.returncode == 1
    assert "no trace ffffffffffffffffffffffffffffffff" in unknown.stderr
    assert cli("traces").returncode == 2


def test_subject_templates_keep_span_names_bounded() -> None:
    assert subject_template("agentbus.v1.runs.events.r1") == "agentbus.v1.runs.events.{run_id}"
    assert (
        subject_template("agentbus.v1.events.acme.git.deployment")
        == "agentbus.v1.events.{tenant}.{source}.{type}"
    )
    assert subject_template("agentbus.v1.runs.submit") == "agentbus.v1.runs.submit"


def test_span_files_rotate_and_both_are_read(tmp_path: Path) -> None:
    exporter = JsonLinesSpanExporter(tmp_path, "gateway", max_bytes=2000)
    provider = TracerProvider(resource=Resource.create({"service.name": "agentbus-gateway"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("t")
    ids = []
    for i in range(20):
        with tracer.start_as_current_span(f"request {i}") as span:
            ids.append(format(span.get_span_context().trace_id, "032x"))
    provider.shutdown()
    current, previous = tmp_path / "gateway.jsonl", tmp_path / "gateway.1.jsonl"
    assert previous.exists() and current.stat().st_size <= 2000 + 600
    spans = tv.load_spans(tmp_path)
    kept = {s.trace_id for s in spans}
    # The newest spans are always there; the oldest went with an earlier rotation.
    assert ids[-1] in kept and ids[0] not in kept
    assert tv.find_trace(spans, ids[-1]).roots[0].span.name == "request 19"
