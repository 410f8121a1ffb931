"""OpenTelemetry tracing: OTLP export when configured, otherwise OTLP-JSON lines under var/traces/.

The file exporter writes one OTLP/JSON `ExportTraceServiceRequest` per line (ids in hex, as the
OTLP JSON encoding requires), so the files can be replayed into any collector and read by
`agentbus traces` without Jaeger.

The trace context travels in NATS headers (W3C `traceparent`/`tracestate`). FastStream's
telemetry middleware handles it for messages published and consumed through the broker; code
that publishes through nats-py directly (JetStream publishes, requests) wraps the call in
`nats_span`, which opens the producer/client span and returns the headers to send.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import SpanKind

from agentbus.contracts import subjects as s

_provider: TracerProvider | None = None


def _any_value(value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}  # OTLP JSON carries 64-bit ints as strings
    if isinstance(value, float):
        return {"doubleValue": value}
    if isinstance(value, str):
        return {"stringValue": value}
    if isinstance(value, (list, tuple)):
        return {"arrayValue": {"values": [_any_value(v) for v in value]}}
    return {"stringValue": str(value)}


def _attributes(attrs: Any) -> list[dict[str, Any]]:
    return [{"key": k, "value": _any_value(v)} for k, v in dict(attrs or {}).items()]


def _span(span: ReadableSpan) -> dict[str, Any]:
    ctx = span.get_span_context()
    assert ctx is not None
    out: dict[str, Any] = {
        "traceId": format(ctx.trace_id, "032x"),
        "spanId": format(ctx.span_id, "016x"),
        "name": span.name,
        "kind": span.kind.value + 1,  # OTLP enum is SDK enum + 1 (0 = unspecified)
        "startTimeUnixNano": str(span.start_time or 0),
        "endTimeUnixNano": str(span.end_time or 0),
        "attributes": _attributes(span.attributes),
        "status": {"code": span.status.status_code.value},
    }
    if span.parent is not None:
        out["parentSpanId"] = format(span.parent.span_id, "016x")
    if span.status.description:
        out["status"]["message"] = span.status.description
    if span.events:
        out["events"] = [
            {
                "timeUnixNano": str(e.timestamp),
                "name": e.name,
                "attributes": _attributes(e.attributes),
            }
            for e in span.events
        ]
    return out


def encode(spans: Sequence[ReadableSpan]) -> dict[str, Any]:
    """Group spans by resource and scope into one OTLP/JSON export request."""
    resources: dict[int, tuple[Resource, dict[str, list[dict[str, Any]]]]] = {}
    for span in spans:
        res = span.resource
        _, scopes = resources.setdefault(id(res), (res, {}))
        scope = span.instrumentation_scope.name if span.instrumentation_scope else ""
        scopes.setdefault(scope, []).append(_span(span))
    return {
        "resourceSpans": [
            {
                "resource": {"attributes": _attributes(res.attributes)},
                "scopeSpans": [
                    {"scope": {"name": name}, "spans": items} for name, items in scopes.items()
                ],
            }
            for res, scopes in resources.values()
        ]
    }


# Span files of a platform left running would grow for ever: past this size a service's file
# becomes `<service>.1.jsonl` (replacing the previous one) and a new one starts.
MAX_FILE_BYTES = 64 * 1024 * 1024


class JsonLinesSpanExporter(SpanExporter):
    """Appends each batch as one line to `<directory>/<service>.jsonl` (rotated, see above)."""

    def __init__(self, directory: Path, service: str, max_bytes: int = MAX_FILE_BYTES) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / f"{service}.jsonl"
        self.previous = directory / f"{service}.1.jsonl"
        self.max_bytes = max_bytes
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        line = json.dumps(encode(spans), separators=(",", ":"))
        try:
            with self._lock:
                with self.path.open("a", encoding="utf-8") as fh:
                    fh.write(line + "\n")
                    size = fh.tell()
                if size > self.max_bytes:
                    # Another replica of the service may append meanwhile: its next batch
                    # simply goes to the new file (each export opens the path anew).
                    self.path.replace(self.previous)
        except OSError:
            return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        return None


class ReplySpanNames(SpanProcessor):
    """Names reply publishes `(reply) publish` instead of after the caller's inbox subject.

    FastStream names a publish span after its destination; for a request's reply that is a
    unique `_INBOX_<user>.<random>` subject, so every reply would get a span name of its own.
    """

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        if span.name.startswith("_INBOX"):
            span.update_name("(reply) publish")
            span.set_attribute("messaging.destination.temporary", True)


def make_exporter(service: str, traces_dir: Path) -> SpanExporter:
    """OTLP/HTTP when an OTLP endpoint is configured (standard OTEL_* variables), else files."""
    if os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get(
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
    ):
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter()
    return JsonLinesSpanExporter(traces_dir, service)


def setup_tracing(service: str, version: str, traces_dir: Path, instance: str) -> TracerProvider:
    """Install the global tracer provider for this process (once)."""
    global _provider
    if _provider is not None:
        return _provider
    resource = Resource.create(
        {
            "service.name": f"agentbus-{service}",
            "service.version": version,
            "service.namespace": "agentbus",
            "service.instance.id": instance,
        }
    )
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(ReplySpanNames())
    provider.add_span_processor(
        # Analytics records one insert span per stored message, up to a whole batch (2,000) at
        # once: the default queue of 2,048 would drop spans of the next batch.
        BatchSpanProcessor(
            make_exporter(service, traces_dir),
            schedule_delay_millis=1000,
            max_queue_size=32_768,
            max_export_batch_size=2_048,
        )
    )
    trace.set_tracer_provider(provider)
    _provider = provider
    return provider


def shutdown_tracing() -> None:
    """Flush buffered spans; called on clean shutdown so no span of the last requests is lost."""
    global _provider
    if _provider is not None:
        _provider.shutdown()
        _provider = None


# -- context propagation over NATS ---------------------------------------------------------------

TRACER_NAME = "agentbus"

# Subjects that carry an id: spans are named after the template so span names stay bounded.
_TEMPLATES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(rf"^{re.escape(s.PREFIX)}\.runs\.events\.[^.]+$"), "runs.events.{run_id}"),
    (re.compile(rf"^{re.escape(s.PREFIX)}\.runs\.control\.[^.]+$"), "runs.control.{run_id}"),
    (
        re.compile(rf"^{re.escape(s.PREFIX)}\.ingest\.progress\.[^.]+$"),
        "ingest.progress.{document_id}",
    ),
    (
        re.compile(rf"^{re.escape(s.PREFIX)}\.events\.[^.]+\.[^.]+\.[^.]+$"),
        "events.{tenant}.{source}.{type}",
    ),
)


def tracer() -> trace.Tracer:
    """The tracer for Agentbus's own spans (resolved late: the provider is set at start-up)."""
    return trace.get_tracer(TRACER_NAME)


def subject_template(subject: str) -> str:
    """`agentbus.v1.runs.events.<id>` -> `agentbus.v1.runs.events.{run_id}`; others unchanged."""
    for pattern, template in _TEMPLATES:
        if pattern.match(subject):
            return f"{s.PREFIX}.{template}"
    return subject


def with_trace_context(headers: Mapping[str, str] | None = None) -> dict[str, str]:
    """`headers` plus the current trace context (`traceparent`, `tracestate`)."""
    out = dict(headers or {})
    propagate.inject(out)
    return out


@contextlib.contextmanager
def nats_span(
    subject: str,
    operation: Literal["publish", "request"] = "publish",
    headers: Mapping[str, str] | None = None,
    attributes: Mapping[str, Any] | None = None,
    parent: Mapping[str, str] | None = None,
) -> Iterator[dict[str, str]]:
    """A producer (publish) or client (request) span for a raw nats-py call.

    Yields the headers to send: `headers` plus this span's context, so the consumer's span
    (FastStream's middleware extracts it) becomes its child. `parent` (headers saved by
    `with_trace_context` earlier) puts the span in that trace instead of the current one, for
    work published on behalf of an earlier request.
    """
    template = subject_template(subject)
    attrs: dict[str, Any] = {
        "messaging.system": "nats",
        "messaging.destination.name": subject,
        "messaging.operation.type": "send" if operation == "request" else "publish",
        "messaging.operation.name": operation,
        **(attributes or {}),
    }
    if template != subject:
        attrs["messaging.destination.template"] = template
    kind = SpanKind.CLIENT if operation == "request" else SpanKind.PRODUCER
    context = propagate.extract(parent) if parent else None
    with tracer().start_as_current_span(
        f"{template} {operation}", context=context, kind=kind, attributes=attrs
    ):
        yield with_trace_context(headers)
