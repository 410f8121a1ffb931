"""Bad input: rejected with a reason and counted; the consumers and the query handler go on."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from nats.aio.client import Client as NatsClient

from agentbus.analytics.app import build
from agentbus.analytics.queries import robust_z
from agentbus.analytics.settings import AnalyticsSettings
from agentbus.contracts import (
    AnalyticsResult,
    DomainEvent,
    ErrorReply,
    EvaluationScored,
    LlmUsage,
    RunFinished,
)
from agentbus.contracts import subjects as s
from agentbus.runtime.testing import running

from .support import as_dicts, ask, eventually


def deployment(tenant: str, **data: Any) -> DomainEvent:
    return DomainEvent(
        tenant_id=tenant, source="ci", type="deployment", data={"service": "api", **data}
    )


async def test_malformed_events_are_rejected_counted_and_later_ones_stored(
    analytics_env: dict[str, str], nc: NatsClient, tenant: str
) -> None:
    js = nc.jetstream()
    subject = s.domain_event(tenant, "ci", "deployment")
    good_before = deployment(tenant)
    schema_violation = json.dumps({"tenant_id": tenant, "type": "deployment"}).encode()
    other_tenant = deployment(tenant + "x")  # body claims another tenant than the subject
    wrong_type = DomainEvent(tenant_id=tenant, source="ci", type="commit", data={"sha": "a"})
    bad_usage = {
        **json.loads(LlmUsage(tenant_id=tenant, model="m", provider="p").model_dump_json())
    }
    bad_usage["input_tokens"] = -5
    await js.publish(subject, good_before.model_dump_json().encode())
    await js.publish(subject, b"{not json")
    await js.publish(subject, b"\xff\xfe")
    await js.publish(subject, schema_violation)
    await js.publish(subject, other_tenant.model_dump_json().encode())
    await js.publish(subject, wrong_type.model_dump_json().encode())
    await js.publish(s.TELEMETRY_LLM_USAGE, json.dumps(bad_usage).encode())
    await js.publish("agentbus.v1.telemetry.something_new", b"{}")
    await js.publish(s.ingest_progress("doc1"), b'{"tenant_id": "x"}')
    good_after = [deployment(tenant, commits=[f"c{i}"]) for i in range(3)]
    for event in good_after:
        await js.publish(subject, event.model_dump_json().encode())

    service = build(AnalyticsSettings())
    async with running(service):

        async def stored() -> bool:
            rows = as_dicts(await ask(nc, tenant, "dora", since_hours=1))
            return any(r["service"] == "api" and r["deployments"] == 4 for r in rows)

        await eventually(stored, what="the four valid deployments")
        expected = {
            (subject, "invalid_json"): 2,
            (subject, "schema"): 1,
            (subject, "subject_mismatch"): 2,
            (s.TELEMETRY_LLM_USAGE, "schema"): 1,
            ("agentbus.v1.telemetry.something_new", "unknown_subject"): 1,
            (s.ingest_progress("doc1"), "schema"): 1,
        }

        def counted() -> dict[tuple[str, str], float]:
            return {key: service.rejects.value(*key) for key in expected}

        async def all_counted() -> bool:
            # Each stream has its own consumer: the telemetry and ingest rejects may come later.
            return counted() == expected

        await eventually(all_counted, what="every reject counted")
        assert counted() == expected
        # The body's tenant never got in anywhere.
        assert as_dicts(await ask(nc, tenant + "x", "dora", since_hours=1)) == []


async def test_a_backfill_spanning_a_decade_is_stored_in_one_batch(
    analytics_env: dict[str, str], nc: NatsClient, tenant: str
) -> None:
    js = nc.jetstream()
    subject = s.domain_event(tenant, "ci", "deployment")
    start = datetime(2015, 1, 1, tzinfo=UTC)
    for month in range(130):  # more months than ClickHouse's partitions-per-insert default
        event = DomainEvent(
            tenant_id=tenant,
            source="ci",
            type="deployment",
            ts=start + timedelta(days=31 * month),
            data={"service": "api"},
        )
        await js.publish(subject, event.model_dump_json().encode())
    service = build(AnalyticsSettings())
    async with running(service):

        async def stored() -> bool:
            rows = as_dicts(await ask(nc, tenant, "dora", since="2014-01-01", until="2027-01-01"))
            return any(r["service"] == "*" and r["deployments"] == 130 for r in rows)

        await eventually(stored, what="130 monthly deployments")


async def test_query_params_are_validated_and_every_query_is_tenant_scoped(
    analytics_env: dict[str, str], nc: NatsClient, tenant: str
) -> None:
    js = nc.jetstream()
    now = datetime.now(UTC)
    run = RunFinished(
        tenant_id=tenant,
        run_id="r1",
        thread_id="th1",
        assistant_id="agent",
        status="success",
        duration_ms=10,
        trace_id="ab" * 16,
        question="how do we roll back?",
        answer="Run deploy --rollback.",
        contexts=["runbook: deploy --rollback", "second"],
    )
    score = EvaluationScored(
        tenant_id=tenant,
        evaluation_id="ev1",
        run_id="r1",
        trace_id="ab" * 16,
        metric="conciseness",
        score=0.75,
        judge="heuristic",
    )
    usage = LlmUsage(tenant_id=tenant, run_id="r1", model="m", provider="p", input_tokens=3)
    await js.publish(s.TELEMETRY_RUN_FINISHED, run.model_dump_json().encode())
    await js.publish(s.TELEMETRY_EVALUATION_SCORED, score.model_dump_json().encode())
    await js.publish(s.TELEMETRY_LLM_USAGE, usage.model_dump_json().encode())
    dep = deployment(tenant)
    await js.publish(s.domain_event(tenant, "ci", "deployment"), dep.model_dump_json().encode())

    service = build(AnalyticsSettings())
    async with running(service):

        async def stored() -> bool:
            evals = as_dicts(await ask(nc, tenant, "evaluations"))
            deps = as_dicts(await ask(nc, tenant, "dora", since_hours=1))
            usage_rows = as_dicts(await ask(nc, tenant, "usage"))
            return bool(evals and deps and usage_rows)

        await eventually(stored, what="the tenant's rows")

        recorded = await ask(nc, tenant, "recorded_runs", since_hours=1, limit=10)
        assert recorded.columns == [
            "run_id",
            "trace_id",
            "thread_id",
            "assistant_id",
            "status",
            "ts",
            "question",
            "answer",
            "contexts",
        ]
        (row,) = as_dicts(recorded)
        assert row["run_id"] == "r1" and row["question"] == "how do we roll back?"
        assert json.loads(str(row["contexts"])) == ["runbook: deploy --rollback", "second"]
        assert abs(datetime.fromisoformat(str(row["ts"])) - now) < timedelta(minutes=5)
        evaluations = await ask(nc, tenant, "evaluations", evaluation_id="ev1")
        assert evaluations.columns == ["metric", "judge", "runs", "mean_score", "min_score"]
        assert evaluations.rows == [["conciseness", "heuristic", 1, 0.75, 0.75]]
        assert (await ask(nc, tenant, "evaluations", evaluation_id="other")).rows == []

        # Another tenant sees nothing through any query.
        stranger = tenant + "z"
        for name, params in [
            ("usage", {"group_by": "tenant"}),
            ("runs", {}),
            ("dora", {}),
            ("recorded_runs", {}),
            ("evaluations", {}),
        ]:
            result = await ask(nc, stranger, name, **params)
            assert result.error is None and result.rows == [], (name, result)
        anomalies = await ask(nc, stranger, "anomalies", since_hours=48)
        assert anomalies.error is None and anomalies.rows == []
        # Today's runs have no history before them: not unusual by default; asked to judge
        # without history, the jump from an empty baseline is reported.
        runs = {"series": "runs.count", "period": "2d"}
        assert as_dicts(await ask(nc, tenant, "anomalies", **runs)) == []
        mine = as_dicts(await ask(nc, tenant, "anomalies", **runs, min_history_days=0))
        assert [r["day"] for r in mine] == [now.date().isoformat()]
        assert mine[0]["direction"] == "high" and mine[0]["z_score"] is None

        # Bad parameters: an error naming the problem, never a partial result.
        bad: list[tuple[str, dict[str, Any], str]] = [
            ("usage", {"group_by": "user"}, "group_by"),
            ("usage", {"tenant_id": "other"}, "tenant_id"),  # tenant never from params
            ("usage", {"since_hours": -1}, "since_hours"),
            ("usage", {"since": "yesterday"}, "since"),
            ("usage", {"since_hours": 1, "period": "1d"}, "only one of"),
            ("runs", {"period": "forever"}, "period"),
            ("dora", {"since": "2026-01-02", "until": "2026-01-01"}, "until"),
            ("anomalies", {"series": "usage.everything"}, "series"),
            ("anomalies", {"baseline_days": 1}, "baseline_days"),
            ("recorded_runs", {"limit": 5000}, "limit"),
            ("recorded_runs", {"limit": "many"}, "limit"),
            ("evaluations", {"sql": "DROP TABLE runs"}, "sql"),
        ]
        for name, params, fragment in bad:
            result = await ask(nc, tenant, name, **params)
            assert result.error is not None and fragment in result.error, (name, params, result)
            assert result.rows == []
        assert service.rejects.value(s.ANALYTICS_QUERY, "bad_params") >= 12

        # An unreadable request gets an ErrorReply.
        for body in (b"{oops", b'{"tenant_id": "t", "name": "sql"}', b'{"name": "usage"}'):
            reply = await nc.request(s.ANALYTICS_QUERY, body, timeout=10)
            error = ErrorReply.model_validate_json(reply.data)
            assert error.reason in {"invalid_json", "schema"}
        # Still answering.
        assert isinstance(await ask(nc, tenant, "runs"), AnalyticsResult)


@pytest.mark.parametrize(
    ("x", "baseline", "flagged", "z"),
    [
        (10.0, [10, 11, 9, 10, 12, 8, 10], False, 0.0),
        (40.0, [10, 11, 9, 10, 12, 8, 10], True, 0.6745 * 30 / 1),
        (10.0, [0, 0, 0, 0, 0, 0, 10], True, 10 / (1.2533 * 10 / 7)),
        (0.0, [0, 0, 0], False, None),
        (1.0, [0, 0, 0], True, None),
    ],
)
def test_robust_z(x: float, baseline: list[float], flagged: bool, z: float | None) -> None:
    got_flag, got_z, _, _ = robust_z(x, baseline, 3.5)
    assert got_flag is flagged
    assert got_z == (pytest.approx(z) if z is not None else None)


async def test_a_result_too_large_for_the_bus_is_an_error_not_a_timeout(
    analytics_env: dict[str, str], nc: NatsClient, tenant: str
) -> None:
    js = nc.jetstream()
    for i in range(80):  # 80 answers of 16,000 characters: over NATS's 1 MB message limit
        run = RunFinished(
            tenant_id=tenant,
            run_id=f"r{i}",
            thread_id="th",
            assistant_id="agent",
            status="success",
            duration_ms=1,
            question="q",
            answer="a" * 16_000,
        )
        await js.publish(s.TELEMETRY_RUN_FINISHED, run.model_dump_json().encode())
    service = build(AnalyticsSettings())
    async with running(service):

        async def stored() -> bool:
            rows = as_dicts(await ask(nc, tenant, "runs"))
            return bool(rows) and rows[0]["runs"] == 80

        await eventually(stored, what="80 runs")
        big = await ask(nc, tenant, "recorded_runs", limit=1000)
        assert big.error is not None and "message limit" in big.error and big.rows == []
        small = await ask(nc, tenant, "recorded_runs", limit=10)
        assert small.error is None and len(small.rows) == 10
