"""Who publishes and who consumes each subject, with its payload: DESIGN.md §3 as data.

The contract tests check that every subject has a producer and a consumer and that every model is
carried by some subject; the deploy layer derives NATS permissions from the same table.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from . import subjects as s
from .analytics import AnalyticsQuery, AnalyticsResult, DeleteEvents, EventsDeleted
from .base import Contract
from .evaluations import (
    EvaluationFinished,
    EvaluationMetrics,
    EvaluationMetricsRequest,
    EvaluationProgress,
    EvaluationRequested,
)
from .events import DomainEvent
from .graphs import GRAPHS_DESCRIBE, GraphDescribeRequest, GraphDescription
from .health import SERVICES, ServiceHealth
from .ingest import (
    DeleteDocument,
    DocumentDeleted,
    DocumentIndexed,
    IngestFailed,
    IngestProgress,
    IngestRequested,
)
from .insights import (
    ALERTS_ANOMALY_ALL,
    ANALYTICS_SQL,
    AnalyticsSql,
    AnomalyDetected,
    SqlResult,
)
from .retrieval import (
    GraphQuery,
    GraphResult,
    Passages,
    PassagesRequest,
    SearchRequest,
    SearchResult,
)
from .runs import RunControl, RunEvent, RunRequested, ThreadState, ThreadStateRequest
from .store import STORE_OPS, StoreReply, StoreRequest
from .streams import BUCKETS, DEAD_LETTERS, STREAMS, BucketSpec, StreamSpec, consumers_of
from .telemetry import EvaluationScored, LlmUsage, RunFinished, ToolCalled
from .threads import THREADS_UPDATE, ThreadUpdated, ThreadUpdateRequest

Kind = Literal["stream", "core", "request"]

# Parties that are not our services: other systems feeding the bus, and operators' tools.
EXTERNAL = "external"
OPERATOR = "operator"
# A stream republishing what it stored (StreamSpec.republish): nats-server itself, no user.
JETSTREAM = "jetstream"


@dataclass(frozen=True)
class SubjectSpec:
    subject: str
    kind: Kind
    producers: tuple[str, ...]
    consumers: tuple[str, ...]
    payloads: tuple[type[Contract], ...]
    reply: type[Contract] | None = None
    stream: str | None = None
    queue_group: str | None = None
    description: str = ""


SUBJECTS: tuple[SubjectSpec, ...] = (
    SubjectSpec(
        s.RUNS_SUBMIT,
        "stream",
        # The orchestrator publishes the next queued run of a thread when a run ends.
        producers=("gateway", "orchestrator"),
        consumers=("orchestrator",),
        payloads=(RunRequested,),
        stream="RUNS",
        description="Runs to execute (work queue)",
    ),
    SubjectSpec(
        s.RUN_EVENTS_ALL,
        "stream",
        # The gateway ends a queued run cancelled before it started (one `end` event).
        producers=("orchestrator", "gateway"),
        consumers=("gateway",),
        payloads=(RunEvent,),
        stream="RUN_EVENTS",
        description="Events of run <run_id>, replayable by seq",
    ),
    SubjectSpec(
        s.RUN_EVENTS_STORED_ALL,
        "core",
        producers=(JETSTREAM,),
        consumers=("gateway",),
        payloads=(RunEvent,),
        description="Events of run <run_id> once RUN_EVENTS stored them, republished by the "
        "stream in its order (headers Nats-Sequence, Nats-Last-Sequence)",
    ),
    SubjectSpec(
        s.RUN_CONTROL_ALL,
        "core",
        producers=("gateway",),
        consumers=("orchestrator",),
        payloads=(RunControl,),
        description="Cancel or interrupt run <run_id>",
    ),
    SubjectSpec(
        s.THREADS_STATE,
        "request",
        producers=("gateway",),
        consumers=("orchestrator",),
        payloads=(ThreadStateRequest,),
        reply=ThreadState,
        queue_group="orchestrator",
        description="Current values, next nodes, checkpoint and history of a thread",
    ),
    SubjectSpec(
        STORE_OPS,
        "request",
        producers=("gateway",),
        consumers=("orchestrator",),
        payloads=(StoreRequest,),
        reply=StoreReply,
        queue_group="orchestrator",
        description="The tenant's LangGraph store: put, get, delete, search, namespaces",
    ),
    SubjectSpec(
        THREADS_UPDATE,
        "request",
        producers=("gateway",),
        consumers=("orchestrator",),
        payloads=(ThreadUpdateRequest,),
        reply=ThreadUpdated,
        queue_group="orchestrator",
        description="Update a thread's state as a node, copy a thread, prune checkpoints",
    ),
    SubjectSpec(
        GRAPHS_DESCRIBE,
        "request",
        producers=("gateway",),
        consumers=("orchestrator",),
        payloads=(GraphDescribeRequest,),
        reply=GraphDescription,
        queue_group="orchestrator",
        description="The graphs the orchestrator hosts; a graph's drawing, schemas, subgraphs",
    ),
    SubjectSpec(
        s.RETRIEVAL_SEARCH,
        "request",
        producers=("orchestrator", "gateway"),
        consumers=("retrieval",),
        payloads=(SearchRequest,),
        reply=SearchResult,
        queue_group="retrieval",
        description="Vector, keyword or hybrid search over a tenant's chunks",
    ),
    SubjectSpec(
        s.RETRIEVAL_PASSAGES,
        "request",
        # MCP's resources/read: a document's text, not a search.
        producers=("gateway",),
        consumers=("retrieval",),
        payloads=(PassagesRequest,),
        reply=Passages,
        queue_group="retrieval",
        description="A document's indexed passages in reading order, whole or one page",
    ),
    SubjectSpec(
        s.GRAPH_QUERY,
        "request",
        producers=("orchestrator", "gateway"),
        consumers=("retrieval",),
        payloads=(GraphQuery,),
        reply=GraphResult,
        queue_group="retrieval",
        description="Named knowledge-graph queries",
    ),
    SubjectSpec(
        s.ANALYTICS_QUERY,
        "request",
        # The operator's CLI reads recorded runs for `agentbus eval`.
        producers=("orchestrator", "gateway", OPERATOR),
        consumers=("analytics",),
        payloads=(AnalyticsQuery,),
        reply=AnalyticsResult,
        queue_group="analytics",
        description="Named usage, runs, DORA and anomaly queries",
    ),
    SubjectSpec(
        s.ANALYTICS_DELETE_EVENTS,
        "request",
        # `agentbus demo --remove` takes the sample's events out again.
        producers=(OPERATOR,),
        consumers=("analytics",),
        payloads=(DeleteEvents,),
        reply=EventsDeleted,
        queue_group="analytics",
        description="Delete a tenant's domain events by id prefix (a loaded sample's events)",
    ),
    SubjectSpec(
        ANALYTICS_SQL,
        "request",
        producers=("orchestrator",),
        consumers=("analytics",),
        payloads=(AnalyticsSql,),
        reply=SqlResult,
        queue_group="analytics",
        description="One read-only SELECT over allow-listed tables, scoped to the tenant by "
        "analytics",
    ),
    SubjectSpec(
        ALERTS_ANOMALY_ALL,
        "stream",
        producers=("orchestrator",),
        # Other systems and the web app subscribe; the assistant's insights specialist reads
        # them back (recent_alerts, an ordered consumer).
        consumers=(EXTERNAL, "orchestrator"),
        payloads=(AnomalyDetected,),
        stream="ALERTS",
        description="Anomaly alerts of tenant <tenant>: a metric series far from its baseline",
    ),
    SubjectSpec(
        s.INGEST_SUBMIT,
        "stream",
        producers=("gateway", EXTERNAL),
        consumers=("ingest",),
        payloads=(IngestRequested,),
        stream="INGEST",
        description="Documents to index; bytes in the `documents` object store",
    ),
    SubjectSpec(
        s.INGEST_DELETE,
        "request",
        producers=("gateway",),
        consumers=("ingest",),
        payloads=(DeleteDocument,),
        reply=DocumentDeleted,
        queue_group="ingest",
        description="Remove a document's chunks, graph links and bytes",
    ),
    SubjectSpec(
        s.INGEST_PROGRESS_ALL,
        "stream",
        producers=("ingest",),
        consumers=("gateway", "analytics"),
        payloads=(IngestProgress, DocumentIndexed, IngestFailed),
        stream="INGEST_EVENTS",
        description="Progress and outcome of document <doc_id>",
    ),
    SubjectSpec(
        s.EVENTS_ALL,
        "stream",
        producers=(EXTERNAL,),
        consumers=("analytics", "ingest"),
        payloads=(DomainEvent,),
        stream="EVENTS",
        description="Domain events: agentbus.v1.events.<tenant>.<source>.<type>",
    ),
    SubjectSpec(
        s.TELEMETRY_LLM_USAGE,
        "stream",
        producers=("orchestrator", "ingest"),
        # Not the gateway: it sums a run's usage from the run's own events, never seeing other
        # tenants' calls.
        consumers=("analytics",),
        payloads=(LlmUsage,),
        stream="TELEMETRY",
        description="One model call: tokens, cost, latency",
    ),
    SubjectSpec(
        s.TELEMETRY_RUN_FINISHED,
        "stream",
        producers=("orchestrator",),
        consumers=("analytics",),
        payloads=(RunFinished,),
        stream="TELEMETRY",
        description="Outcome of one run",
    ),
    SubjectSpec(
        s.TELEMETRY_TOOL_CALLED,
        "stream",
        producers=("orchestrator",),
        consumers=("analytics",),
        payloads=(ToolCalled,),
        stream="TELEMETRY",
        description="One tool call of a run",
    ),
    SubjectSpec(
        s.TELEMETRY_EVALUATION_SCORED,
        "stream",
        # `agentbus eval` (the operator), and analytics running an evaluation asked over HTTP.
        producers=(OPERATOR, "analytics"),
        consumers=("analytics",),
        payloads=(EvaluationScored,),
        stream="TELEMETRY",
        description="One evaluation metric's score for one recorded run (`agentbus eval`)",
    ),
    SubjectSpec(
        s.EVALUATIONS_SUBMIT,
        "stream",
        producers=("gateway",),
        consumers=("analytics",),
        payloads=(EvaluationRequested,),
        stream="EVALUATIONS",
        description="Evaluations to run (work queue), from `POST /api/v1/evaluations`",
    ),
    SubjectSpec(
        s.EVALUATION_EVENTS_ALL,
        "stream",
        producers=("analytics",),
        # The gateway reads an evaluation's last message when asked about it (no subscriber).
        consumers=("gateway",),
        payloads=(EvaluationProgress, EvaluationFinished),
        stream="EVALUATION_EVENTS",
        description="Progress and outcome of evaluation <evaluation_id>",
    ),
    SubjectSpec(
        s.EVALUATIONS_METRICS,
        "request",
        producers=("gateway",),
        consumers=("analytics",),
        payloads=(EvaluationMetricsRequest,),
        reply=EvaluationMetrics,
        queue_group="analytics",
        description="The evaluation metrics analytics can judge",
    ),
    SubjectSpec(
        s.HEALTH_ALL,
        "request",
        producers=("gateway", OPERATOR),
        consumers=SERVICES,
        payloads=(),
        reply=ServiceHealth,
        description="Health of service <name> and the engines it depends on (NATS micro endpoint)",
    ),
)


def all_models() -> tuple[type[Contract], ...]:
    """Every contract model carried by a subject, payloads and replies, without duplicates."""
    seen: dict[str, type[Contract]] = {}
    for spec in SUBJECTS:
        for model in (*spec.payloads, *((spec.reply,) if spec.reply else ())):
            seen.setdefault(model.__name__, model)
    return tuple(seen.values())


def spec_for(subject: str) -> SubjectSpec:
    """The catalog entry whose pattern matches a concrete subject."""
    for spec in SUBJECTS:
        if s.matches(spec.subject, subject):
            return spec
    raise KeyError(f"no contract declares subject {subject!r}")


def provisioned_by(service: str) -> tuple[tuple[StreamSpec, ...], tuple[BucketSpec, ...]]:
    """The streams and buckets `service` creates or updates at start-up: those it produces into
    or consumes from, DEAD_LETTERS when it binds durables (its dead-letter records), and the
    buckets it uses. Nothing beyond its own, yet every stream has at least one service."""
    names = {
        spec.stream
        for spec in SUBJECTS
        if spec.stream and (service in spec.producers or service in spec.consumers)
    }
    if consumers_of(service):
        names.add(DEAD_LETTERS.name)
    streams = tuple(x for x in STREAMS if x.name in names)
    return streams, tuple(b for b in BUCKETS if service in b.users)
