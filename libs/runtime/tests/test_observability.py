"""JSON logs carry trace/run/tenant ids; the file exporter writes valid OTLP-JSON lines."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from agentbus.runtime.logs import JsonFormatter, log_context
from agentbus.runtime.traces import JsonLinesSpanExporter


def test_json_lines_exporter_writes_otlp_json(tmp_path: Path) -> None:
    exporter = JsonLinesSpanExporter(tmp_path, "gateway")
    provider = TracerProvider(resource=Resource.create({"service.name": "agentbus-gateway"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    with (
        tracer.start_as_current_span("parent") as parent,
        tracer.start_as_current_span("child", attributes={"n": 3, "ok": True, "x": 0.5}),
    ):
        pass
    provider.shutdown()
    lines = (tmp_path / "gateway.jsonl").read_text().splitlines()
    spans = [
        span
        for line in lines
        for rs in json.loads(line)["resourceSpans"]
        for ss in rs["scopeSpans"]
        for span in ss["spans"]
    ]
    by_name = {s["name"]: s for s in spans}
    trace_id = format(parent.get_span_context().trace_id, "032x")
    assert by_name["parent"]["traceId"] == trace_id == by_name["child"]["traceId"]
    assert by_name["child"]["parentSpanId"] == by_name["parent"]["spanId"]
    assert len(by_name["parent"]["spanId"]) == 16
    assert "parentSpanId" not in by_name["parent"]
    attrs = {a["key"]: a["value"] for a in by_name["child"]["attributes"]}
    assert attrs == {"n": {"intValue": "3"}, "ok": {"boolValue": True}, "x": {"doubleValue": 0.5}}
    resource = json.loads(lines[0])["resourceSpans"][0]["resource"]["attributes"]
    assert {"key": "service.name", "value": {"stringValue": "agentbus-gateway"}} in resource


def test_json_logs_carry_trace_run_and_tenant() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter("orchestrator"))
    logger = logging.getLogger("agentbus.test.json")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    tracer = TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("run") as span, log_context(run_id="r1", tenant_id="acme"):
        logger.info("step done", extra={"node": "router"})
    logger.info("outside")
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["trace_id"] == format(span.get_span_context().trace_id, "032x")
    assert first["run_id"] == "r1" and first["tenant_id"] == "acme"
    assert first["node"] == "router" and first["service"] == "orchestrator"
    assert "run_id" not in second and "trace_id" not in second


def test_idle_fetch_timeouts_from_faststream_are_demoted_and_others_are_not() -> None:
    import logging

    from agentbus.runtime.logs import IdleFetchTimeouts

    def record_of(raiser: str, exc: BaseException, msg: str) -> logging.LogRecord:
        namespace: dict[str, object] = {}
        # A frame named like nats-py's fetch, in a file whose path says nats.
        code = compile(f"def {raiser}():\n    raise exc\n", "/x/nats/js/client.py", "exec")
        exec(code, {"exc": exc}, namespace)
        try:
            namespace[raiser]()  # type: ignore[operator]
        except BaseException as caught:
            info = (type(caught), caught, caught.__traceback__)
        return logging.LogRecord(
            "agentbus.ingest.broker", logging.ERROR, __file__, 1, msg, None, info
        )

    keep = IdleFetchTimeouts()
    idle = record_of("_fetch_n", TimeoutError(), "Task-3 raised an exception, retrying...")
    assert keep.filter(idle) is False and idle.levelname == "DEBUG"
    for other in (
        record_of("_fetch_n", ValueError("x"), "Task-3 raised an exception, retrying..."),
        record_of("handle", TimeoutError(), "Task-3 raised an exception, retrying..."),
        record_of("_fetch_n", TimeoutError(), "run failed"),
    ):
        assert keep.filter(other) is True and other.levelname == "ERROR"
