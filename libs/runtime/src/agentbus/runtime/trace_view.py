"""Read the local span files (`<data_dir>/traces/*.jsonl`) and print one trace as a tree.

The files hold OTLP/JSON export requests, one per line, written by every service's file exporter
(see `traces.py`). Spans of one trace come from several files (one per service); the tree links
them by `parentSpanId`. A span whose parent is not in any file is an orphan: it is printed at the
top level and marked, because it means some hop did not carry the trace context.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# OTLP span kinds (the JSON encoding's enum).
KINDS = {0: "unspecified", 1: "internal", 2: "server", 3: "client", 4: "producer", 5: "consumer"}
SERVER = 2
STATUS = {0: "unset", 1: "ok", 2: "error"}

# Attributes worth a glance in the tree; everything else is in --json.
KEY_ATTRIBUTES = (
    "http.request.method",
    "http.route",
    "http.response.status_code",
    "http.status_code",
    "agentbus.run_id",
    "agentbus.run_status",
    "gen_ai.provider.name",
    "gen_ai.request.model",
    "gen_ai.response.model",
    "gen_ai.usage.input_tokens",
    "gen_ai.usage.output_tokens",
    "gen_ai.tool.name",
    "db.system.name",
    "db.operation.name",
    "db.collection.name",
    "db.response.returned_rows",
    "agentbus.search.hits",
    "agentbus.ingest.stage",
    "error.type",
)


class TraceViewError(Exception):
    """Nothing to show: no span files, no such trace. The message is one line."""


@dataclass
class Span:
    trace_id: str
    span_id: str
    parent_id: str | None
    name: str
    service: str
    kind: int
    start_ns: int
    end_ns: int
    attributes: dict[str, Any]
    status: str
    status_message: str = ""
    events: list[dict[str, Any]] = field(default_factory=list)

    @property
    def duration_ms(self) -> float:
        return max(0, self.end_ns - self.start_ns) / 1e6

    @property
    def error(self) -> bool:
        return self.status == "error"


@dataclass
class Node:
    span: Span
    children: list[Node] = field(default_factory=list)
    orphan: bool = False


@dataclass
class Trace:
    trace_id: str
    spans: list[Span]
    roots: list[Node]

    @property
    def orphans(self) -> list[Span]:
        return [n.span for n in self.roots if n.orphan]

    @property
    def services(self) -> list[str]:
        return sorted({s.service for s in self.spans})

    @property
    def start_ns(self) -> int:
        return min(s.start_ns for s in self.spans)

    @property
    def duration_ms(self) -> float:
        return (max(s.end_ns for s in self.spans) - self.start_ns) / 1e6


# -- reading ----------------------------------------------------------------------------------


def _value(v: dict[str, Any]) -> Any:
    if "stringValue" in v:
        return v["stringValue"]
    if "boolValue" in v:
        return bool(v["boolValue"])
    if "intValue" in v:
        return int(v["intValue"])
    if "doubleValue" in v:
        return float(v["doubleValue"])
    if "arrayValue" in v:
        return [_value(x) for x in v["arrayValue"].get("values", [])]
    if "kvlistValue" in v:
        return {kv["key"]: _value(kv.get("value", {})) for kv in v["kvlistValue"].get("values", [])}
    return None


def _attrs(items: list[dict[str, Any]] | None) -> dict[str, Any]:
    return {a["key"]: _value(a.get("value", {})) for a in items or []}


def _service(resource_attrs: dict[str, Any]) -> str:
    name = str(resource_attrs.get("service.name") or "unknown")
    return name.removeprefix("agentbus-")


def parse_request(request: dict[str, Any]) -> list[Span]:
    """The spans of one OTLP/JSON ExportTraceServiceRequest."""
    out: list[Span] = []
    for rs in request.get("resourceSpans", []):
        service = _service(_attrs(rs.get("resource", {}).get("attributes")))
        for ss in rs.get("scopeSpans", []):
            for sp in ss.get("spans", []):
                status = sp.get("status") or {}
                out.append(
                    Span(
                        trace_id=str(sp["traceId"]).lower(),
                        span_id=str(sp["spanId"]).lower(),
                        parent_id=str(sp["parentSpanId"]).lower()
                        if sp.get("parentSpanId")
                        else None,
                        name=str(sp.get("name", "")),
                        service=service,
                        kind=int(sp.get("kind", 0)),
                        start_ns=int(sp.get("startTimeUnixNano", 0)),
                        end_ns=int(sp.get("endTimeUnixNano", 0)),
                        attributes=_attrs(sp.get("attributes")),
                        status=STATUS.get(int(status.get("code", 0)), "unset"),
                        status_message=str(status.get("message", "")),
                        events=[
                            {"name": e.get("name", ""), "attributes": _attrs(e.get("attributes"))}
                            for e in sp.get("events", [])
                        ],
                    )
                )
    return out


def load_spans(directory: Path, needles: Iterable[str] = ()) -> list[Span]:
    """Every span in the directory's `*.jsonl` files (with `needles`: only from the lines that
    contain one of them, e.g. a trace id, which skips parsing the rest of big files).

    A line that is not JSON (the end of a file a service is appending to right now) is skipped.
    """
    wanted = tuple(needles)
    files = sorted(directory.glob("*.jsonl")) if directory.is_dir() else []
    if not files:
        raise TraceViewError(
            f"no span files in {directory} (services write them there when "
            "OTEL_EXPORTER_OTLP_ENDPOINT is not set; with it, look in your collector)"
        )
    spans: list[Span] = []
    for path in files:
        with path.open(encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if wanted and not any(n in line for n in wanted):
                    continue
                try:
                    request = json.loads(line)
                except ValueError:
                    continue
                if isinstance(request, dict):
                    spans.extend(parse_request(request))
    return spans


# -- building -----------------------------------------------------------------------------------


def build(trace_id: str, spans: list[Span]) -> Trace:
    """The tree of one trace; children in start order, orphans marked at the top level."""
    mine = [s for s in spans if s.trace_id == trace_id]
    nodes = {s.span_id: Node(s) for s in mine}
    roots: list[Node] = []
    for node in nodes.values():
        parent = node.span.parent_id
        if parent is None:
            roots.append(node)
        elif parent in nodes:
            nodes[parent].children.append(node)
        else:
            node.orphan = True
            roots.append(node)
    for node in nodes.values():
        node.children.sort(key=lambda n: (n.span.start_ns, n.span.end_ns))
    roots.sort(key=lambda n: (n.orphan, n.span.start_ns))
    return Trace(trace_id, mine, roots)


def find_trace(spans: list[Span], trace_id: str) -> Trace:
    """A trace by id or by a unique prefix of at least 8 hex digits."""
    wanted = trace_id.strip().lower()
    if not wanted or any(c not in "0123456789abcdef" for c in wanted) or len(wanted) > 32:
        raise TraceViewError(f"not a trace id: {trace_id!r} (32 hex digits)")
    ids = {s.trace_id for s in spans}
    if wanted in ids:
        return build(wanted, spans)
    matches = sorted(i for i in ids if i.startswith(wanted)) if len(wanted) >= 8 else []
    if len(matches) == 1:
        return build(matches[0], spans)
    if len(matches) > 1:
        raise TraceViewError(f"{trace_id} matches {len(matches)} traces; give more digits")
    raise TraceViewError(
        f"no trace {trace_id} in the span files (`agentbus traces --list` shows recent ones)"
    )


def find_run(spans: list[Span], run_id: str) -> list[Trace]:
    """The traces with a span of this run (usually one; a resumed run adds one per request)."""
    ids = {s.trace_id for s in spans if s.attributes.get("agentbus.run_id") == run_id}
    if not ids:
        raise TraceViewError(f"no span of run {run_id} in the span files")
    found = [build(i, spans) for i in ids]
    return sorted(found, key=lambda t: t.start_ns)


def recent(spans: list[Span], limit: int = 10, *, requests_only: bool = True) -> list[Trace]:
    """The most recent traces, newest first, by the start of their root span.

    With `requests_only`, traces rooted at a server span (an HTTP request) come first, so
    background work (ingest progress, telemetry) does not hide the last question asked.
    """
    roots = [s for s in spans if s.parent_id is None]
    if requests_only and any(r.kind == SERVER for r in roots):
        roots = [r for r in roots if r.kind == SERVER]
    roots.sort(key=lambda s: s.start_ns, reverse=True)
    seen: list[str] = []
    for root in roots:
        if root.trace_id not in seen:
            seen.append(root.trace_id)
        if len(seen) >= limit:
            break
    return [build(i, spans) for i in seen]


def last_trace(spans: list[Span]) -> Trace:
    found = recent(spans, 1)
    if not found:
        raise TraceViewError("no complete trace in the span files (no root span yet)")
    return found[0]


# -- printing -----------------------------------------------------------------------------------


def fmt_ms(ms: float) -> str:
    return f"{ms / 1e3:.2f} s" if ms >= 1000 else f"{ms:.1f} ms"


def _details(span: Span) -> str:
    parts = [f"{k}={span.attributes[k]}" for k in KEY_ATTRIBUTES if k in span.attributes]
    return "  " + " ".join(parts) if parts else ""


def _error(span: Span) -> str:
    if not span.error:
        return ""
    message = span.status_message
    if not message:
        for event in span.events:
            if event["name"] == "exception":
                attrs = event["attributes"]
                message = f"{attrs.get('exception.type', '')}: {attrs.get('exception.message', '')}"
                break
    return "  !! ERROR" + (f": {message[:200]}" if message else "")


def _line(node: Node, count: int = 1, total_ms: float = 0.0, errors: int = 0) -> str:
    span = node.span
    label = span.name + (f" x{count}" if count > 1 else "")
    took = fmt_ms(span.duration_ms) if count == 1 else f"{fmt_ms(total_ms)} total"
    text = f"{label}  [{span.service}]  {took}{_details(span) if count == 1 else ''}"
    if count == 1:
        text += _error(span)
    elif errors:
        text += f"  !! {errors} ERRORS"
    if node.orphan:
        text += f"  !! ORPHAN (parent {span.parent_id} not in this trace)"
    return text


def _groups(children: list[Node]) -> list[tuple[Node, int, float, int]]:
    """Consecutive leaf siblings with the same name and service collapse into one line."""
    out: list[tuple[Node, int, float, int]] = []
    for child in children:
        s = child.span
        if out and not child.children and not child.orphan:
            first, count, total, errors = out[-1]
            if (
                not first.children
                and not first.orphan
                and (first.span.name, first.span.service) == (s.name, s.service)
            ):
                out[-1] = (first, count + 1, total + s.duration_ms, errors + int(s.error))
                continue
        out.append((child, 1, s.duration_ms, int(s.error)))
    return out


def render(trace: Trace) -> str:
    lines = [
        f"trace {trace.trace_id}  {len(trace.spans)} spans  "
        f"services: {', '.join(trace.services)}  {fmt_ms(trace.duration_ms)}"
    ]

    def walk(nodes: list[Node], prefix: str) -> None:
        groups = _groups(nodes)
        for i, (node, count, total, errors) in enumerate(groups):
            last = i == len(groups) - 1
            lines.append(prefix + ("└─ " if last else "├─ ") + _line(node, count, total, errors))
            if count == 1:
                walk(node.children, prefix + ("   " if last else "│  "))

    walk(trace.roots, "")
    if trace.orphans:
        lines.append(f"{len(trace.orphans)} orphan span(s): a hop did not carry the trace context")
    errors = sum(1 for s in trace.spans if s.error)
    if errors:
        lines.append(f"{errors} span(s) with errors")
    return "\n".join(lines)


def _node_json(node: Node) -> dict[str, Any]:
    s = node.span
    out: dict[str, Any] = {
        "name": s.name,
        "service": s.service,
        "span_id": s.span_id,
        "parent_span_id": s.parent_id,
        "kind": KINDS.get(s.kind, str(s.kind)),
        "start_unix_nano": s.start_ns,
        "duration_ms": round(s.duration_ms, 3),
        "status": s.status,
        "attributes": s.attributes,
    }
    if s.status_message:
        out["status_message"] = s.status_message
    if s.events:
        out["events"] = s.events
    if node.orphan:
        out["orphan"] = True
    out["children"] = [_node_json(c) for c in node.children]
    return out


def to_json(trace: Trace) -> dict[str, Any]:
    return {
        "trace_id": trace.trace_id,
        "spans": len(trace.spans),
        "services": trace.services,
        "duration_ms": round(trace.duration_ms, 3),
        "orphans": len(trace.orphans),
        "errors": sum(1 for s in trace.spans if s.error),
        "tree": [_node_json(n) for n in trace.roots],
    }


def render_list(traces: list[Trace]) -> str:
    from datetime import UTC, datetime

    lines = []
    for t in traces:
        root = t.roots[0].span if t.roots else t.spans[0]
        when = datetime.fromtimestamp(t.start_ns / 1e9, UTC).strftime("%Y-%m-%d %H:%M:%S")
        lines.append(
            f"{when}  {t.trace_id}  {len(t.spans):>4} spans  {fmt_ms(t.duration_ms):>10}  "
            f"[{root.service}] {root.name}"
        )
    return "\n".join(lines)
