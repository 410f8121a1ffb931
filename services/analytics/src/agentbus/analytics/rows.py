"""Contract messages -> ClickHouse rows, including the DORA reading of domain events.

Accepted domain-event shapes (documented in the README):
- `deployment`: `data.service`, `data.commits` (list of shas, or of objects with `sha`) and/or
  `data.commit_sha`/`data.sha`, `data.status` (`failed`, `failure`, `error`, `rolled_back` count as
  failed; anything else, or nothing, is a success), `data.deployment_id` (else the event id).
- `commit` or `change`: `data.sha` (or `commit_sha`, `id`), `data.committed_at` (ISO-8601; else the
  event's `ts`), optional `data.service`.
- `incident` with `data.status` `open`/`opened`/`triggered` or `resolved`/`closed`, or the types
  `incident_opened`/`incident_resolved`; `data.incident_id` (else `data.id`, the CloudEvents
  `subject`, the event id) pairs the open with its resolve; `data.deployment_id` names the
  deployment that caused it (a change failure).
The service of an event is `data.service`, else `data.repository`/`data.repo`, else the CloudEvents
`subject`, else "". Every event is stored whatever its type; these columns only feed DORA.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from agentbus.contracts import (
    DocumentIndexed,
    DomainEvent,
    EvaluationScored,
    IngestFailed,
    IngestProgress,
    LlmUsage,
    RunFinished,
    ToolCalled,
)

Row = tuple[Any, ...]

COLUMNS: dict[str, tuple[str, ...]] = {
    "events": (
        "tenant_id",
        "id",
        "ts",
        "source",
        "type",
        "subject",
        "kind",
        "service",
        "status",
        "sha",
        "commits",
        "incident_id",
        "deployment_id",
        "committed_at",
        "data",
        "stored_at",
    ),
    "llm_usage": (
        "tenant_id",
        "id",
        "ts",
        "run_id",
        "thread_id",
        "assistant_id",
        "operation",
        "model",
        "provider",
        "input_tokens",
        "output_tokens",
        "cached_tokens",
        "cost_usd",
        "latency_ms",
        "ttft_ms",
        "streamed",
        "ok",
        "trace_id",
    ),
    "runs": (
        "tenant_id",
        "id",
        "ts",
        "run_id",
        "thread_id",
        "assistant_id",
        "status",
        "duration_ms",
        "node_count",
        "tool_count",
        "trace_id",
        "question",
        "answer",
        "contexts",
    ),
    "tool_calls": (
        "tenant_id",
        "id",
        "ts",
        "run_id",
        "tool",
        "duration_ms",
        "ok",
        "error",
        "trace_id",
    ),
    "evaluations": (
        "tenant_id",
        "id",
        "ts",
        "evaluation_id",
        "run_id",
        "trace_id",
        "metric",
        "score",
        "judge",
        "judge_model",
        "reason",
    ),
    "ingest_events": (
        "tenant_id",
        "id",
        "ts",
        "kind",
        "document_id",
        "sha256",
        "stage",
        "done",
        "total",
        "chunks",
        "pages",
        "entities",
        "unchanged",
        "duration_ms",
        "reason",
        "retryable",
    ),
}

# One encoder for every row: `json.dumps` with options builds a new encoder per call.
_DATA_JSON = json.JSONEncoder(separators=(",", ":"), default=str)

DEPLOYMENT_TYPES = frozenset({"deployment"})
COMMIT_TYPES = frozenset({"commit", "change"})
INCIDENT_TYPES = frozenset({"incident", "incident_opened", "incident_resolved"})
FAILED_DEPLOYMENT = frozenset({"failed", "failure", "error", "rolled_back", "rollback"})
INCIDENT_OPEN = frozenset({"open", "opened", "triggered"})
INCIDENT_RESOLVED = frozenset({"resolved", "closed"})


def utc(value: datetime) -> datetime:
    """Naive times on the bus are UTC by contract; ClickHouse stores UTC."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _text(data: dict[str, Any], *keys: str) -> str:
    for key in keys:
        value = data.get(key)
        if isinstance(value, str) and value:
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
    return ""


def _time(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return utc(datetime.fromisoformat(value.replace("Z", "+00:00")))
    except ValueError:
        return None


def _commits(data: dict[str, Any]) -> list[str]:
    shas: list[str] = []
    raw = data.get("commits")
    if isinstance(raw, list):
        for item in raw:
            if isinstance(item, str) and item:
                shas.append(item)
            elif isinstance(item, dict):
                sha = _text(item, "sha", "id")
                if sha:
                    shas.append(sha)
    single = _text(data, "commit_sha", "sha")
    if single and single not in shas:
        shas.append(single)
    return shas


def event_row(event: DomainEvent, stored_at: datetime) -> Row:
    data = event.data
    ts = utc(event.ts)
    kind = status = sha = incident_id = deployment_id = ""
    commits: list[str] = []
    committed_at: datetime | None = None
    service = _text(data, "service", "repository", "repo") or (event.subject or "")
    if event.type in DEPLOYMENT_TYPES:
        kind = "deployment"
        raw_status = _text(data, "status").lower()
        status = "failed" if raw_status in FAILED_DEPLOYMENT else "success"
        commits = _commits(data)
        deployment_id = _text(data, "deployment_id") or event.id
    elif event.type in COMMIT_TYPES:
        kind = "commit"
        sha = _text(data, "sha", "commit_sha", "id")
        committed_at = _time(data.get("committed_at")) or _time(data.get("timestamp"))
        committed_at = committed_at or ts
    elif event.type in INCIDENT_TYPES:
        kind = "incident"
        raw_status = _text(data, "status").lower()
        if event.type == "incident_opened" or (
            event.type == "incident" and raw_status in INCIDENT_OPEN
        ):
            status = "open"
        elif event.type == "incident_resolved" or (
            event.type == "incident" and raw_status in INCIDENT_RESOLVED
        ):
            status = "resolved"
        else:
            status = raw_status  # an update (acknowledged, ...): stored, not a DORA edge
        incident_id = _text(data, "incident_id", "id") or event.subject or event.id
        deployment_id = _text(data, "deployment_id")
    return (
        event.tenant_id,
        event.id,
        ts,
        event.source,
        event.type,
        event.subject,
        kind,
        service,
        status,
        sha,
        commits,
        incident_id,
        deployment_id,
        committed_at,
        _DATA_JSON.encode(data),
        stored_at,
    )


def usage_row(m: LlmUsage) -> Row:
    return (
        m.tenant_id,
        m.id,
        utc(m.ts),
        m.run_id or "",
        m.thread_id or "",
        m.assistant_id or "",
        m.operation,
        m.model,
        m.provider,
        m.input_tokens,
        m.output_tokens,
        m.cached_tokens,
        m.cost_usd,
        m.latency_ms,
        m.ttft_ms,
        m.streamed,
        m.ok,
        m.trace_id or "",
    )


def run_row(m: RunFinished) -> Row:
    return (
        m.tenant_id,
        m.id,
        utc(m.ts),
        m.run_id,
        m.thread_id,
        m.assistant_id,
        m.status,
        m.duration_ms,
        m.node_count,
        m.tool_count,
        m.trace_id or "",
        m.question or "",
        m.answer or "",
        list(m.contexts),
    )


def tool_row(m: ToolCalled) -> Row:
    return (
        m.tenant_id,
        m.id,
        utc(m.ts),
        m.run_id or "",
        m.tool,
        m.duration_ms,
        m.ok,
        m.error or "",
        m.trace_id or "",
    )


def evaluation_row(m: EvaluationScored) -> Row:
    return (
        m.tenant_id,
        m.id,
        utc(m.ts),
        m.evaluation_id,
        m.run_id,
        m.trace_id or "",
        m.metric,
        m.score,
        m.judge,
        m.judge_model or "",
        m.reason,
    )


def ingest_row(m: IngestProgress | DocumentIndexed | IngestFailed) -> Row:
    kind = stage = reason = ""
    done = total = chunks = pages = entities = 0
    unchanged = retryable = False
    duration_ms = 0.0
    if isinstance(m, IngestProgress):
        kind, stage, done, total = "progress", m.stage, m.done, m.total
        reason = m.detail or ""
    elif isinstance(m, DocumentIndexed):
        kind, stage = "indexed", "stored"
        chunks, pages, entities = m.chunks, m.pages, m.entities
        unchanged, duration_ms = m.unchanged, m.duration_ms
    else:
        kind, stage, reason, retryable = "failed", m.stage, m.reason, m.retryable
    return (
        m.tenant_id,
        m.id,
        utc(m.ts),
        kind,
        m.document_id,
        m.sha256 or "",
        stage,
        done,
        total,
        chunks,
        pages,
        entities,
        unchanged,
        duration_ms,
        reason,
        retryable,
    )
