"""Subject names and builders. Everything on the bus lives under `agentbus.v1.`."""

from __future__ import annotations

import re
from typing import Final

PREFIX: Final = "agentbus.v1"

RUNS_SUBMIT: Final = f"{PREFIX}.runs.submit"
RUN_EVENTS_ALL: Final = f"{PREFIX}.runs.events.>"
# What RUN_EVENTS stored, republished by the stream itself (in stream order, with the stream's
# sequence headers): the gateway follows a run here with a core subscription.
RUN_EVENTS_STORED_ALL: Final = f"{PREFIX}.runs.stored.>"
RUN_CONTROL_ALL: Final = f"{PREFIX}.runs.control.*"
THREADS_STATE: Final = f"{PREFIX}.threads.state"
RETRIEVAL_SEARCH: Final = f"{PREFIX}.retrieval.search"
RETRIEVAL_PASSAGES: Final = f"{PREFIX}.retrieval.passages"
GRAPH_QUERY: Final = f"{PREFIX}.graph.query"
ANALYTICS_QUERY: Final = f"{PREFIX}.analytics.query"
# Removing what an outside system loaded (the sample organisation's events), by id prefix.
ANALYTICS_DELETE_EVENTS: Final = f"{PREFIX}.analytics.delete_events"
# Ingest jobs carry their tenant in the subject, so NATS permissions can bind an outside
# system's credentials to one tenant: agentbus.v1.ingest.submit.<tenant>.
INGEST_SUBMIT: Final = f"{PREFIX}.ingest.submit.*"
INGEST_DELETE: Final = f"{PREFIX}.ingest.delete"
INGEST_PROGRESS_ALL: Final = f"{PREFIX}.ingest.progress.>"
EVENTS_ALL: Final = f"{PREFIX}.events.>"
TELEMETRY_ALL: Final = f"{PREFIX}.telemetry.>"
TELEMETRY_LLM_USAGE: Final = f"{PREFIX}.telemetry.llm_usage"
TELEMETRY_RUN_FINISHED: Final = f"{PREFIX}.telemetry.run_finished"
TELEMETRY_TOOL_CALLED: Final = f"{PREFIX}.telemetry.tool_called"
TELEMETRY_EVALUATION_SCORED: Final = f"{PREFIX}.telemetry.evaluation_scored"
# Evaluations over HTTP (`POST /api/v1/evaluations`): the gateway's work item for analytics,
# the metrics analytics knows, and each evaluation's progress and outcome
# (agentbus.v1.evaluations.events.<evaluation_id>).
EVALUATIONS_SUBMIT: Final = f"{PREFIX}.evaluations.submit"
EVALUATIONS_METRICS: Final = f"{PREFIX}.evaluations.metrics"
EVALUATION_EVENTS_ALL: Final = f"{PREFIX}.evaluations.events.*"
HEALTH_ALL: Final = f"{PREFIX}.health.*"

# JetStream publishes this advisory when a message exhausts max_deliver; the DEAD_LETTERS stream
# keeps it as the durable dead-letter record.
MAX_DELIVERIES_ADVISORY_ALL: Final = "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.>"
TERMINATED_ADVISORY_ALL: Final = "$JS.EVENT.ADVISORY.CONSUMER.MSG_TERMINATED.>"

_TOKEN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")


class SubjectError(ValueError):
    """A value that cannot be a subject token (empty, dotted, wildcard, whitespace)."""


def token(value: str, what: str = "token") -> str:
    """Check one subject token: a dot, `*`, `>` or space would change which subjects match."""
    if not _TOKEN.fullmatch(value) or len(value) > 128:
        raise SubjectError(f"invalid {what} for a subject: {value!r}")
    return value


def run_events(run_id: str) -> str:
    return f"{PREFIX}.runs.events.{token(run_id, 'run id')}"


def run_events_stored(run_id: str) -> str:
    return f"{PREFIX}.runs.stored.{token(run_id, 'run id')}"


def run_control(run_id: str) -> str:
    return f"{PREFIX}.runs.control.{token(run_id, 'run id')}"


def ingest_submit(tenant_id: str) -> str:
    return f"{PREFIX}.ingest.submit.{token(tenant_id, 'tenant id')}"


def parse_ingest_submit(subject: str) -> str:
    """The tenant of `agentbus.v1.ingest.submit.<tenant>`."""
    parts = subject.split(".")
    if len(parts) != 5 or ".".join(parts[:4]) != f"{PREFIX}.ingest.submit":
        raise SubjectError(f"not an ingest submit subject: {subject!r}")
    return parts[4]


def domain_events_of(tenant_id: str) -> str:
    """Every domain event of one tenant: what that tenant's publisher may publish."""
    return f"{PREFIX}.events.{token(tenant_id, 'tenant id')}.>"


# Subjects outside systems publish, as the narrower pattern one tenant's publisher gets.
TENANT_SCOPED: Final = {
    EVENTS_ALL: domain_events_of,
    INGEST_SUBMIT: ingest_submit,
}


def ingest_progress(document_id: str) -> str:
    return f"{PREFIX}.ingest.progress.{token(document_id, 'document id')}"


def evaluation_events(evaluation_id: str) -> str:
    return f"{PREFIX}.evaluations.events.{token(evaluation_id, 'evaluation id')}"


def domain_event(tenant_id: str, source: str, event_type: str) -> str:
    return (
        f"{PREFIX}.events.{token(tenant_id, 'tenant id')}"
        f".{token(source, 'event source')}.{token(event_type, 'event type')}"
    )


def health(service: str) -> str:
    return f"{PREFIX}.health.{token(service, 'service name')}"


def parse_domain_event(subject: str) -> tuple[str, str, str]:
    """Split `agentbus.v1.events.<tenant>.<source>.<type>` into its three tokens."""
    parts = subject.split(".")
    if len(parts) != 6 or ".".join(parts[:3]) != f"{PREFIX}.events":
        raise SubjectError(f"not a domain event subject: {subject!r}")
    return parts[3], parts[4], parts[5]


def matches(pattern: str, subject: str) -> bool:
    """NATS wildcard matching: `*` is one token, `>` one or more trailing tokens."""
    p_tokens, s_tokens = pattern.split("."), subject.split(".")
    for i, p in enumerate(p_tokens):
        if p == ">":
            return len(s_tokens) > i
        if i >= len(s_tokens) or (p != "*" and p != s_tokens[i]):
            return False
    return len(p_tokens) == len(s_tokens)
