"""JetStream streams, durable consumers and KV/Object Store buckets, as data.

The runtime provisions these idempotently at start-up; the deploy layer (KEDA triggers, NATS
permissions) is generated from the same definitions, so names cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from . import subjects as s

Retention = Literal["limits", "workqueue", "interest"]

HOUR = 3600.0
# Open SSE streams the platform holds at once (each costs about 50 KiB in nats-server).
SSE_STREAMS_PER_CLUSTER = 50_000
DAY = 24 * HOUR


@dataclass(frozen=True)
class StreamSpec:
    name: str
    subjects: tuple[str, ...]
    retention: Retention
    max_age_s: float
    duplicate_window_s: float
    description: str
    max_bytes: int = -1
    storage: Literal["file", "memory"] = "file"
    # nats-server caps consumers per stream at 1,000 unless told otherwise (-1 included).
    max_consumers: int = 1000
    # Direct gets (`$JS.API.DIRECT.GET.<name>`): reads answered without a consumer.
    allow_direct: bool = False
    # (source pattern, destination pattern): the stream republishes each message it stored.
    republish: tuple[str, str] | None = None


@dataclass(frozen=True)
class ConsumerSpec:
    """A durable pull consumer. `service` is the only service that binds it.

    `nak_delays_s` are the redelivery delays our handlers pass to an explicit NAK after a failed
    attempt (attempt n waits nak_delays_s[min(n, len-1)]). They are not JetStream's `backoff`,
    which would also shorten the first ack wait and redeliver long runs that are still healthy.
    """

    stream: str
    durable: str
    service: str
    filter_subject: str
    ack_wait_s: float
    max_deliver: int
    nak_delays_s: tuple[float, ...] = ()
    max_ack_pending: int = 1000
    description: str = ""


@dataclass(frozen=True)
class BucketSpec:
    name: str
    kind: Literal["kv", "object"]
    description: str
    ttl_s: float | None = None
    history: int = 1
    users: tuple[str, ...] = field(default_factory=tuple)
    # Object buckets: the most bytes the bucket holds (-1 = no limit); a put past it is refused.
    # Services may override it by setting (AGENTBUS_DOCUMENTS_MAX_BYTES for `documents`).
    max_bytes: int = -1


RUNS = StreamSpec(
    name="RUNS",
    subjects=(s.RUNS_SUBMIT,),
    retention="workqueue",
    max_age_s=DAY,
    duplicate_window_s=10 * 60,
    description="Runs waiting for an orchestrator; dedupe by Nats-Msg-Id = run_id",
)
RUN_EVENTS = StreamSpec(
    name="RUN_EVENTS",
    subjects=(s.RUN_EVENTS_ALL,),
    retention="limits",
    max_age_s=HOUR,
    duplicate_window_s=10 * 60,
    description="Every event of every run, replayable by sequence; dedupe by run_id:seq",
    # SSE streams follow a run without a consumer of their own: what was stored before they
    # came by direct get, what is stored after on the republished subject.
    allow_direct=True,
    republish=(s.RUN_EVENTS_ALL, s.RUN_EVENTS_STORED_ALL),
    max_consumers=SSE_STREAMS_PER_CLUSTER,
)
INGEST = StreamSpec(
    name="INGEST",
    subjects=(s.INGEST_SUBMIT,),
    retention="workqueue",
    max_age_s=7 * DAY,
    duplicate_window_s=10 * 60,
    description="Documents waiting to be indexed; dedupe by content hash",
)
INGEST_EVENTS = StreamSpec(
    name="INGEST_EVENTS",
    subjects=(s.INGEST_PROGRESS_ALL,),
    retention="limits",
    max_age_s=DAY,
    duplicate_window_s=2 * 60,
    description="Ingest progress and outcomes per document",
    max_consumers=SSE_STREAMS_PER_CLUSTER,
)
EVENTS = StreamSpec(
    name="EVENTS",
    subjects=(s.EVENTS_ALL,),
    retention="limits",
    max_age_s=30 * DAY,
    duplicate_window_s=10 * 60,
    description="Domain events from other systems (CloudEvents-shaped)",
)
TELEMETRY = StreamSpec(
    name="TELEMETRY",
    subjects=(s.TELEMETRY_ALL,),
    retention="limits",
    max_age_s=7 * DAY,
    duplicate_window_s=2 * 60,
    description="Usage and outcome telemetry for analytics",
)
# Imported here, not from subjects: the assistant's alert subjects live with their contracts.
_ALERTS_ALL = f"{s.PREFIX}.alerts.>"
ALERTS = StreamSpec(
    name="ALERTS",
    subjects=(_ALERTS_ALL,),
    retention="limits",
    max_age_s=30 * DAY,
    duplicate_window_s=DAY,
    description="Alerts for other systems and the web app (AnomalyDetected); dedupe by "
    "series and day",
)
EVALUATIONS = StreamSpec(
    name="EVALUATIONS",
    subjects=(s.EVALUATIONS_SUBMIT,),
    retention="workqueue",
    max_age_s=DAY,
    duplicate_window_s=10 * 60,
    description="Evaluations waiting for analytics; dedupe by Nats-Msg-Id = evaluation_id",
)
EVALUATION_EVENTS = StreamSpec(
    name="EVALUATION_EVENTS",
    subjects=(s.EVALUATION_EVENTS_ALL,),
    retention="limits",
    max_age_s=7 * DAY,
    duplicate_window_s=10 * 60,
    description="Progress and outcome of each evaluation; a subject's last message is its state",
)
DEAD_LETTERS = StreamSpec(
    name="DEAD_LETTERS",
    subjects=(s.MAX_DELIVERIES_ADVISORY_ALL, s.TERMINATED_ADVISORY_ALL),
    retention="limits",
    max_age_s=30 * DAY,
    duplicate_window_s=2 * 60,
    description="Advisories for messages that exhausted max_deliver or were terminated",
)

STREAMS: tuple[StreamSpec, ...] = (
    RUNS,
    RUN_EVENTS,
    INGEST,
    INGEST_EVENTS,
    EVENTS,
    TELEMETRY,
    ALERTS,
    EVALUATIONS,
    EVALUATION_EVENTS,
    DEAD_LETTERS,
)

ORCHESTRATOR_RUNS = ConsumerSpec(
    stream="RUNS",
    durable="orchestrator",
    service="orchestrator",
    filter_subject=s.RUNS_SUBMIT,
    ack_wait_s=15,
    max_deliver=5,
    nak_delays_s=(1, 5, 15, 30),
    max_ack_pending=256,
    description="Run workers; heartbeats with in_progress() while a run executes",
)
INGEST_JOBS = ConsumerSpec(
    stream="INGEST",
    durable="ingest",
    service="ingest",
    filter_subject=s.INGEST_SUBMIT,
    ack_wait_s=30,
    max_deliver=5,
    nak_delays_s=(2, 10, 30, 60),
    max_ack_pending=64,
    description="Document indexing workers",
)
INGEST_DOMAIN_EVENTS = ConsumerSpec(
    stream="EVENTS",
    durable="ingest-graph",
    service="ingest",
    filter_subject=s.EVENTS_ALL,
    ack_wait_s=30,
    max_deliver=10,
    nak_delays_s=(1, 5, 30),
    description="Projects people/team/repo/skill facts into the graph",
)
ANALYTICS_DOMAIN_EVENTS = ConsumerSpec(
    stream="EVENTS",
    durable="analytics-events",
    service="analytics",
    filter_subject=s.EVENTS_ALL,
    ack_wait_s=30,
    max_deliver=10,
    nak_delays_s=(1, 5, 30),
    max_ack_pending=10_000,
    description="Stores domain events in ClickHouse in batches",
)
ANALYTICS_TELEMETRY = ConsumerSpec(
    stream="TELEMETRY",
    durable="analytics-telemetry",
    service="analytics",
    filter_subject=s.TELEMETRY_ALL,
    ack_wait_s=30,
    max_deliver=10,
    nak_delays_s=(1, 5, 30),
    max_ack_pending=10_000,
    description="Stores usage and run telemetry in ClickHouse in batches",
)
ANALYTICS_INGEST_EVENTS = ConsumerSpec(
    stream="INGEST_EVENTS",
    durable="analytics-ingest",
    service="analytics",
    filter_subject=s.INGEST_PROGRESS_ALL,
    ack_wait_s=30,
    max_deliver=10,
    nak_delays_s=(1, 5, 30),
    max_ack_pending=10_000,
    description="Stores ingest outcomes in ClickHouse",
)
# One evaluation judges every recent run on every metric: minutes, with in_progress()
# heartbeats. A worker that dies is replaced by a redelivery after ack_wait; the request's
# deadline bounds all attempts together (see agentbus.analytics.evaluation_jobs).
ANALYTICS_EVALUATIONS = ConsumerSpec(
    stream="EVALUATIONS",
    durable="analytics-evaluations",
    service="analytics",
    filter_subject=s.EVALUATIONS_SUBMIT,
    ack_wait_s=30,
    max_deliver=3,
    nak_delays_s=(5, 30),
    max_ack_pending=8,
    description="Evaluation workers; heartbeats with in_progress() while an evaluation runs",
)

CONSUMERS: tuple[ConsumerSpec, ...] = (
    ORCHESTRATOR_RUNS,
    INGEST_JOBS,
    INGEST_DOMAIN_EVENTS,
    ANALYTICS_DOMAIN_EVENTS,
    ANALYTICS_TELEMETRY,
    ANALYTICS_INGEST_EVENTS,
    ANALYTICS_EVALUATIONS,
)

DOCUMENTS = BucketSpec(
    name="documents",
    kind="object",
    description="Uploaded file bytes, keyed by object name",
    users=("gateway", "ingest"),
    max_bytes=10 * 1024**3,
)
THREAD_RUNS = BucketSpec(
    name="thread_runs",
    kind="kv",
    description="Active run per thread; compare-and-set admits runs (multitask strategy)",
    history=1,
    users=("gateway", "orchestrator"),
)
RATE_LIMITS = BucketSpec(
    name="rate_limits",
    kind="kv",
    description="Rate-limit windows per tenant and route, shared by gateway replicas",
    ttl_s=HOUR,
    users=("gateway",),
)

LLM_CACHE = BucketSpec(
    name="llm_cache",
    kind="kv",
    description="Exact response cache of model calls, keyed by tenant and request hash; entries "
    "older than models.yaml's cache ttl are misses, the bucket drops them after a day",
    ttl_s=DAY,
    users=("orchestrator",),
)
BUCKETS: tuple[BucketSpec, ...] = (DOCUMENTS, THREAD_RUNS, RATE_LIMITS, LLM_CACHE)


def stream(name: str) -> StreamSpec:
    for spec in STREAMS:
        if spec.name == name:
            return spec
    raise KeyError(name)


def consumers_of(service: str) -> tuple[ConsumerSpec, ...]:
    return tuple(c for c in CONSUMERS if c.service == service)
