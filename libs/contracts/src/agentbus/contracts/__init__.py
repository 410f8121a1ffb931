"""Agentbus contracts: every message on the bus, its subject and the streams that hold it."""

from . import subjects
from .analytics import (
    AnalyticsQuery,
    AnalyticsQueryName,
    AnalyticsResult,
    DeleteEvents,
    EventsDeleted,
)
from .base import Contract, ErrorReply, Event, TenantContract, new_id, utcnow
from .catalog import SUBJECTS, SubjectSpec, all_models, spec_for
from .evaluations import (
    EvaluationFinished,
    EvaluationMetrics,
    EvaluationMetricsRequest,
    EvaluationProgress,
    EvaluationRequested,
)
from .events import DomainEvent
from .graphs import GRAPHS_DESCRIBE, GraphDescribeRequest, GraphDescription
from .health import SERVICES, ComponentHealth, ServiceHealth, ServiceName
from .ingest import (
    ChunkingOverrides,
    DeleteDocument,
    DocumentDeleted,
    DocumentIndexed,
    IngestFailed,
    IngestProgress,
    IngestRequested,
)
from .insights import AnalyticsSql, AnomalyDetected, SqlResult
from .retrieval import (
    GraphQuery,
    GraphResult,
    Passage,
    Passages,
    PassagesRequest,
    SearchFilters,
    SearchHit,
    SearchRequest,
    SearchResult,
)
from .runs import (
    RunControl,
    RunEvent,
    RunRequested,
    RunStatus,
    ThreadCheckpoint,
    ThreadState,
    ThreadStateRequest,
)
from .store import STORE_OPS, StoreReply, StoreRequest
from .streams import BUCKETS, CONSUMERS, STREAMS, BucketSpec, ConsumerSpec, StreamSpec
from .telemetry import EvaluationScored, LlmUsage, RunFinished, ToolCalled
from .threads import THREADS_UPDATE, ThreadUpdated, ThreadUpdateRequest

__version__ = "0.1.0"

__all__ = [
    "BUCKETS",
    "CONSUMERS",
    "GRAPHS_DESCRIBE",
    "SERVICES",
    "STORE_OPS",
    "STREAMS",
    "SUBJECTS",
    "THREADS_UPDATE",
    "AnalyticsQuery",
    "AnalyticsQueryName",
    "AnalyticsResult",
    "AnalyticsSql",
    "AnomalyDetected",
    "BucketSpec",
    "ChunkingOverrides",
    "ComponentHealth",
    "ConsumerSpec",
    "Contract",
    "DeleteDocument",
    "DeleteEvents",
    "DocumentDeleted",
    "DocumentIndexed",
    "DomainEvent",
    "ErrorReply",
    "EvaluationFinished",
    "EvaluationMetrics",
    "EvaluationMetricsRequest",
    "EvaluationProgress",
    "EvaluationRequested",
    "EvaluationScored",
    "Event",
    "EventsDeleted",
    "GraphDescribeRequest",
    "GraphDescription",
    "GraphQuery",
    "GraphResult",
    "IngestFailed",
    "IngestProgress",
    "IngestRequested",
    "LlmUsage",
    "Passage",
    "Passages",
    "PassagesRequest",
    "RunControl",
    "RunEvent",
    "RunFinished",
    "RunRequested",
    "RunStatus",
    "SearchFilters",
    "SearchHit",
    "SearchRequest",
    "SearchResult",
    "ServiceHealth",
    "ServiceName",
    "SqlResult",
    "StoreReply",
    "StoreRequest",
    "StreamSpec",
    "SubjectSpec",
    "TenantContract",
    "ThreadCheckpoint",
    "ThreadState",
    "ThreadStateRequest",
    "ThreadUpdateRequest",
    "ThreadUpdated",
    "ToolCalled",
    "all_models",
    "new_id",
    "spec_for",
    "subjects",
    "utcnow",
]
