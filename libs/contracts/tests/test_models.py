"""Unit tests of the models and subject builders (pure logic)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pydantic
import pytest

import agentbus.contracts as c
from agentbus.contracts import subjects as s
from agentbus.contracts.evaluations import FAILURES, EvaluationMetric, failed
from agentbus.contracts.graphs import GraphInfo
from agentbus.contracts.insights import AnalyticsSql, AnomalyDetected, SqlResult

EXAMPLES: list[c.Contract] = [
    c.RunRequested(tenant_id="acme", run_id="r1", thread_id="t1", input={"messages": []}),
    c.RunEvent(tenant_id="acme", run_id="r1", thread_id="t1", seq=0, type="metadata"),
    c.RunControl(tenant_id="acme", run_id="r1", action="cancel"),
    c.ThreadStateRequest(tenant_id="acme", thread_id="t1", history_limit=5),
    c.StoreRequest(tenant_id="acme", op="put", namespace=["notes"], key="k", value={"a": 1}),
    c.StoreReply(tenant_id="acme", namespaces=[["notes", "u1"]]),
    c.ThreadUpdateRequest(tenant_id="acme", op="update_state", thread_id="t1", values={"a": 1}),
    c.ThreadUpdated(tenant_id="acme", checkpoint_id="c1"),
    AnalyticsSql(tenant_id="acme", sql="SELECT count() FROM events", max_rows=10),
    SqlResult(tenant_id="acme", sql="SELECT 1", columns=["n"], rows=[[1]]),
    AnomalyDetected(
        tenant_id="acme",
        series="dora.incidents",
        day="2026-01-05",
        value=4.0,
        z=5.1,
        direction="high",
    ),
    c.GraphDescribeRequest(tenant_id="acme", aspect="graph", graph_id="agent", xray=1),
    c.GraphDescription(
        tenant_id="acme",
        graphs=[GraphInfo(graph_id="agent", description="Supervisor")],
        detail={"nodes": [], "edges": []},
    ),
    c.ThreadState(
        tenant_id="acme", thread_id="t1", current=c.ThreadCheckpoint(checkpoint_id="cp1")
    ),
    c.SearchRequest(tenant_id="acme", query="how do we roll back?", top_k=3),
    c.SearchResult(
        tenant_id="acme",
        query="q",
        mode="hybrid",
        hits=[c.SearchHit(chunk_id="c", document_id="d", chunk_index=0, text="t", score=0.5)],
    ),
    c.PassagesRequest(tenant_id="acme", document_id="d1", page=2),
    c.Passages(
        tenant_id="acme",
        document_id="d1",
        found=True,
        title="Runbook",
        passages=[c.Passage(chunk_index=3, page=2, text="Roll back with deployctl.")],
    ),
    c.GraphQuery(tenant_id="acme", name="people_by_skill", params={"skill": "rust"}),
    c.GraphResult(tenant_id="acme", name="people_by_skill", rows=[{"person": "Ann"}]),
    c.AnalyticsQuery(tenant_id="acme", name="dora", params={"period": "30d"}),
    c.AnalyticsResult(tenant_id="acme", name="dora", columns=["k"], rows=[[1]]),
    c.DeleteEvents(tenant_id="acme", id_prefix="sample-"),
    c.EventsDeleted(tenant_id="acme", deleted=3),
    c.IngestRequested(
        tenant_id="acme",
        document_id="d1",
        object_name="acme/d1",
        filename="a.pdf",
        content_type="application/pdf",
        size=10,
        sha256="0" * 64,
    ),
    c.IngestProgress(tenant_id="acme", document_id="d1", stage="embedded", done=2, total=4),
    c.DocumentIndexed(tenant_id="acme", document_id="d1", sha256="0" * 64, chunks=3),
    c.IngestFailed(tenant_id="acme", document_id="d1", stage="parsed", reason="encrypted PDF"),
    c.DeleteDocument(tenant_id="acme", document_id="d1"),
    c.DocumentDeleted(tenant_id="acme", document_id="d1", found=True, chunks_removed=3),
    c.DomainEvent(tenant_id="acme", source="git", type="deployment", data={"service": "api"}),
    c.LlmUsage(tenant_id="acme", model="local/minilm", provider="local", input_tokens=3),
    c.RunFinished(
        tenant_id="acme",
        run_id="r1",
        thread_id="t1",
        assistant_id="agent",
        status="success",
        duration_ms=12.0,
        question="How do we roll back?",
        answer="Run the rollback job [1].",
        contexts=["Rollbacks use the rollback job."],
    ),
    c.EvaluationScored(
        tenant_id="acme",
        evaluation_id="e1",
        run_id="r1",
        metric="relevancy",
        score=0.8,
        judge="heuristic",
    ),
    c.ToolCalled(tenant_id="acme", tool="search", duration_ms=1.0),
    c.EvaluationRequested(
        tenant_id="acme",
        evaluation_id="e1",
        since_hours=24,
        metrics=["relevancy"],
        deadline=datetime(2026, 1, 5, 12, 0, tzinfo=UTC),
    ),
    c.EvaluationProgress(tenant_id="acme", evaluation_id="e1", done=2, total=5),
    c.EvaluationFinished(
        tenant_id="acme", evaluation_id="e1", status="done", report={"metrics": [], "runs": []}
    ),
    failed("acme", "e1", "worker_lost"),
    c.EvaluationMetricsRequest(tenant_id="acme"),
    c.EvaluationMetrics(
        tenant_id="acme", metrics=[EvaluationMetric(name="relevancy", description="On topic")]
    ),
    c.ServiceHealth(service="gateway", version="0.1.0", instance="h:1", ok=True),
]


def test_examples_cover_every_model() -> None:
    assert {type(e).__name__ for e in EXAMPLES} == {m.__name__ for m in c.all_models()}


@pytest.mark.parametrize("message", EXAMPLES, ids=lambda m: type(m).__name__)
def test_round_trip_through_json(message: c.Contract) -> None:
    # FastStream validates the decoded dict (Python mode), others validate the raw JSON.
    raw = message.model_dump_json()
    assert type(message).model_validate(json.loads(raw)) == message
    assert type(message).model_validate_json(raw) == message


def test_events_get_an_id_and_a_utc_timestamp() -> None:
    a = c.DomainEvent(tenant_id="acme", source="git", type="commit")
    b = c.DomainEvent(tenant_id="acme", source="git", type="commit")
    assert a.id != b.id
    assert isinstance(a.ts, datetime) and a.ts.utcoffset() is not None


@pytest.mark.parametrize(
    "payload",
    [
        {},  # no tenant
        {"tenant_id": "", "query": "q"},
        {"tenant_id": "Acme Corp", "query": "q"},  # not a subject token
        {"tenant_id": "acme.evil", "query": "q"},
        {"tenant_id": "acme", "query": ""},
        {"tenant_id": "acme", "query": "q", "top_k": 0},
        {"tenant_id": "acme", "query": "q", "mode": "fuzzy"},
        {"tenant_id": "acme", "query": "q", "top_k": "5"},  # strict: no coercion
        {"tenant_id": "acme", "query": "q", "unknown": 1},
    ],
)
def test_bad_search_requests_are_rejected(payload: dict[str, object]) -> None:
    with pytest.raises(pydantic.ValidationError):
        c.SearchRequest.model_validate(payload)


def test_messages_are_immutable() -> None:
    msg = c.RunControl(tenant_id="acme", run_id="r1", action="cancel")
    with pytest.raises(pydantic.ValidationError):
        msg.action = "interrupt"  # type: ignore[misc]


def test_subject_builders() -> None:
    assert s.run_events("r1") == "agentbus.v1.runs.events.r1"
    assert s.run_control("r1") == "agentbus.v1.runs.control.r1"
    assert s.ingest_progress("d1") == "agentbus.v1.ingest.progress.d1"
    assert s.domain_event("acme", "git", "deployment") == "agentbus.v1.events.acme.git.deployment"
    assert s.parse_domain_event("agentbus.v1.events.acme.git.deployment") == (
        "acme",
        "git",
        "deployment",
    )
    assert s.health("gateway") == "agentbus.v1.health.gateway"


@pytest.mark.parametrize("bad", ["", "a.b", "*", ">", "a b", "-x", "x" * 200])
def test_subject_builders_reject_bad_tokens(bad: str) -> None:
    with pytest.raises(s.SubjectError):
        s.run_events(bad)


def test_wildcard_matching() -> None:
    assert s.matches("agentbus.v1.runs.events.>", "agentbus.v1.runs.events.r1")
    assert not s.matches("agentbus.v1.runs.events.>", "agentbus.v1.runs.events")
    assert s.matches("agentbus.v1.health.*", "agentbus.v1.health.gateway")
    assert not s.matches("agentbus.v1.health.*", "agentbus.v1.health.gateway.x")
    with pytest.raises(s.SubjectError):
        s.parse_domain_event("agentbus.v1.events.acme.git")


def test_a_failed_evaluation_carries_its_fixed_sentence_only() -> None:
    outcome = failed("acme", "e1", "time_limit")
    assert outcome.status == "failed" and outcome.report is None
    assert outcome.error == FAILURES["time_limit"]
    assert set(FAILURES) == set(c.evaluations.EvaluationFailure.__args__)
    with pytest.raises(pydantic.ValidationError):
        c.EvaluationFinished(
            tenant_id="acme", evaluation_id="e1", status="failed", failure="KeyError: 'x'"
        )
    with pytest.raises(pydantic.ValidationError):  # the id is a subject token
        c.EvaluationRequested(
            tenant_id="acme", evaluation_id="e.>", deadline=datetime(2026, 1, 5, tzinfo=UTC)
        )
    assert s.evaluation_events("e1") == "agentbus.v1.evaluations.events.e1"
    with pytest.raises(s.SubjectError):
        s.evaluation_events("e1.*")
