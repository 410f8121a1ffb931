"""Evaluations asked for over the bus (`POST /api/v1/evaluations`): the analytics service pulls
`EvaluationRequested` from its durable, runs the `agentbus eval` code on the tenant's recorded
runs and publishes progress and the outcome; bad work items are rejected and counted, and
failures carry a fixed sentence. Real NATS and chDB (the session's NATS, a fresh store)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from faststream.nats import TestNatsBroker
from nats.aio.client import Client as NatsClient
from nats.errors import NoRespondersError
from nats.js.errors import NotFoundError

from agentbus.analytics.app import build
from agentbus.analytics.evals.runner import EvalReport, JudgeInfo, RunReport, ScoreEntry
from agentbus.analytics.evaluation_jobs import fitted
from agentbus.analytics.settings import AnalyticsSettings
from agentbus.contracts import ErrorReply, RunFinished, new_id
from agentbus.contracts import subjects as s
from agentbus.contracts.evaluations import (
    FAILURES,
    EvaluationFinished,
    EvaluationMetrics,
    EvaluationMetricsRequest,
    EvaluationProgress,
    EvaluationRequested,
)
from agentbus.contracts.streams import ANALYTICS_EVALUATIONS, EVALUATION_EVENTS
from agentbus.runtime.testing import running

from .support import as_dicts, ask, eventually


def recorded(tenant: str, run_id: str, answer: str = "Run deploy --rollback [1].") -> bytes:
    return (
        RunFinished(
            tenant_id=tenant,
            run_id=run_id,
            thread_id="th1",
            assistant_id="agent",
            status="success",
            duration_ms=10,
            question="How do we roll back a deployment?",
            answer=answer,
            contexts=["runbook: roll back a deployment with deploy --rollback"],
        )
        .model_dump_json()
        .encode()
    )


def request(tenant: str, **over: Any) -> EvaluationRequested:
    fields: dict[str, Any] = {
        "tenant_id": tenant,
        "evaluation_id": new_id(),
        "since_hours": 1,
        "deadline": datetime.now(UTC) + timedelta(minutes=10),
        **over,
    }
    return EvaluationRequested(**fields)


async def recorded_runs(nc: NatsClient, tenant: str) -> int:
    """How many runs of the tenant analytics lists (0 while its query has no responder yet)."""
    try:
        return len(as_dicts(await ask(nc, tenant, "recorded_runs", since_hours=1)))
    except NoRespondersError:
        return 0


async def runs_stored(nc: NatsClient, tenant: str, count: int) -> None:
    """Telemetry taken by a pull request of a service stopped before (an earlier test's) comes
    back after the consumer's 30 s ack wait, so this can take a while."""

    async def stored() -> bool:
        return await recorded_runs(nc, tenant) == count

    await eventually(stored, timeout=150, what=f"{count} recorded runs")


async def submit(nc: NatsClient, job: EvaluationRequested) -> None:
    await nc.jetstream().publish(
        s.EVALUATIONS_SUBMIT,
        job.model_dump_json().encode(),
        headers={"Nats-Msg-Id": job.evaluation_id},
    )


async def last_event(nc: NatsClient, evaluation_id: str) -> bytes | None:
    try:
        msg = await nc.jetstream().get_last_msg(
            EVALUATION_EVENTS.name, s.evaluation_events(evaluation_id)
        )
    except NotFoundError:
        return None
    return msg.data


async def outcome(nc: NatsClient, evaluation_id: str) -> EvaluationFinished:
    found: list[EvaluationFinished] = []

    async def finished() -> bool:
        data = await last_event(nc, evaluation_id)
        if data and b'"status"' in data:
            found.append(EvaluationFinished.model_validate_json(data))
        return bool(found)

    await eventually(finished, timeout=120, what=f"the outcome of {evaluation_id}")
    return found[0]


async def events_to_outcome(nc: NatsClient, evaluation_id: str) -> list[dict[str, Any]]:
    """The evaluation's events in stream order, up to and with its outcome."""
    sub = await nc.jetstream().subscribe(s.evaluation_events(evaluation_id), ordered_consumer=True)
    bodies = [json.loads((await sub.next_msg(timeout=10)).data)]
    while "status" not in bodies[-1]:
        bodies.append(json.loads((await sub.next_msg(timeout=10)).data))
    await sub.unsubscribe()
    return bodies


async def settled(nc: NatsClient) -> None:
    """Nothing of the evaluations' durable is waiting or unacked."""

    async def idle() -> bool:
        info = await nc.jetstream().consumer_info(
            ANALYTICS_EVALUATIONS.stream, ANALYTICS_EVALUATIONS.durable
        )
        return info.num_ack_pending == 0 and info.num_pending == 0

    await eventually(idle, what="the evaluations consumer to settle")


async def test_an_evaluation_runs_on_the_tenants_recorded_runs_and_publishes_its_report(
    analytics_env: dict[str, str], nc: NatsClient, tenant: str
) -> None:
    js = nc.jetstream()
    for run_id in ("r1", "r2"):
        await js.publish(s.TELEMETRY_RUN_FINISHED, recorded(tenant, run_id))
    await js.publish(s.TELEMETRY_RUN_FINISHED, recorded(tenant, "r3", answer=""))
    await js.publish(s.TELEMETRY_RUN_FINISHED, recorded(tenant + "x", "other"))

    service = build(AnalyticsSettings())
    async with running(service):
        await runs_stored(nc, tenant, 3)

        # The metrics an evaluation can use, as the gateway asks before queueing one.
        reply = await nc.request(
            s.EVALUATIONS_METRICS,
            EvaluationMetricsRequest(tenant_id=tenant).model_dump_json().encode(),
            timeout=10,
        )
        metrics = EvaluationMetrics.model_validate_json(reply.data)
        names = {m.name for m in metrics.metrics}
        assert metrics.error is None
        assert {"relevancy", "hallucination", "conciseness"} <= names

        job = request(tenant, metrics=["relevancy", "conciseness"])
        await submit(nc, job)
        done = await outcome(nc, job.evaluation_id)
        assert done.status == "done" and done.failure is None and done.error is None
        assert done.tenant_id == tenant and done.report is not None
        report = done.report
        assert report["evaluation_id"] == job.evaluation_id and report["tenant_id"] == tenant
        assert sorted(r["run_id"] for r in report["runs"]) == ["r1", "r2"]
        assert [p["run_id"] for p in report["skipped"]] == ["r3"]  # no recorded answer
        assert [m["name"] for m in report["metrics"]] == ["relevancy", "conciseness"]
        assert all(m["runs"] == 2 and m["judge"] == "heuristic" for m in report["metrics"])
        assert report["published"] == 4 and report["truncated"] is None

        # Each score is stored here, as `agentbus eval`'s are.
        async def scored() -> bool:
            rows = as_dicts(await ask(nc, tenant, "evaluations", evaluation_id=job.evaluation_id))
            return sorted((r["metric"], r["runs"]) for r in rows) == [
                ("conciseness", 2),
                ("relevancy", 2),
            ]

        await eventually(scored, timeout=150, what="the stored scores")
        await settled(nc)

        # Progress went out before the outcome: the stream holds both, the outcome last.
        bodies = await events_to_outcome(nc, job.evaluation_id)
        progress = [EvaluationProgress.model_validate(b) for b in bodies[:-1]]
        assert progress and progress[0].total == 2 and progress[0].attempt == 1


async def test_bad_work_items_are_rejected_and_failures_carry_a_fixed_sentence(
    analytics_env: dict[str, str], nc: NatsClient, tenant: str
) -> None:
    js = nc.jetstream()
    await js.publish(s.EVALUATIONS_SUBMIT, b"{not json")
    await js.publish(s.EVALUATIONS_SUBMIT, json.dumps({"tenant_id": tenant}).encode())
    expired = request(tenant, deadline=datetime.now(UTC) - timedelta(seconds=1))
    unknown = request(tenant, metrics=["no-such-metric"])
    for job in (expired, unknown):
        await submit(nc, job)

    service = build(AnalyticsSettings())
    async with running(service):
        late = await outcome(nc, expired.evaluation_id)
        assert (late.status, late.failure, late.error) == ("failed", "expired", FAILURES["expired"])
        bad = await outcome(nc, unknown.evaluation_id)
        assert bad.status == "failed" and bad.report is None
        assert (bad.failure, bad.error) == ("unknown_metric", FAILURES["unknown_metric"])
        assert "no-such-metric" not in (bad.error or "")  # the detail is only in the log

        def counted() -> dict[str, float]:
            return {
                reason: service.rejects.value(s.EVALUATIONS_SUBMIT, reason)
                for reason in ("invalid_json", "schema")
            }

        async def rejected() -> bool:
            return counted() == {"invalid_json": 1, "schema": 1}

        await eventually(rejected, what="both rejects counted")
        await settled(nc)  # terminated, not left to redeliver

        # An unreadable metrics request gets an ErrorReply, and the service goes on.
        reply = await nc.request(s.EVALUATIONS_METRICS, b"[]", timeout=10)
        assert ErrorReply.model_validate_json(reply.data).reason == "schema"
        reply = await nc.request(
            s.EVALUATIONS_METRICS,
            EvaluationMetricsRequest(tenant_id=tenant).model_dump_json().encode(),
            timeout=10,
        )
        assert EvaluationMetrics.model_validate_json(reply.data).metrics


async def test_an_evaluation_whose_worker_died_is_redelivered_and_finished(
    analytics_env: dict[str, str], nc: NatsClient, tenant: str
) -> None:
    """A worker took the item and died without acking (here: a pull that never acks); after the
    consumer's ack wait another worker gets it and finishes it."""
    js = nc.jetstream()
    await js.publish(s.TELEMETRY_RUN_FINISHED, recorded(tenant, "r1"))
    async with running(build(AnalyticsSettings())):
        await runs_stored(nc, tenant, 1)
    job = request(tenant, metrics=["conciseness"])
    await submit(nc, job)
    dead = await js.pull_subscribe(
        s.EVALUATIONS_SUBMIT, durable=ANALYTICS_EVALUATIONS.durable, stream="EVALUATIONS"
    )
    taken = await dead.fetch(1, timeout=10)
    assert [json.loads(m.data)["evaluation_id"] for m in taken] == [job.evaluation_id]

    service = build(AnalyticsSettings())
    async with running(service):
        done = await outcome(nc, job.evaluation_id)
        assert done.status == "done" and done.report is not None
        assert [r["run_id"] for r in done.report["runs"]] == ["r1"]
        await settled(nc)


HANGING_MODELS = """
model_list:
  - model_name: deep
    litellm_params:
      model: openai/gpt-4o-mini
      api_base: http://127.0.0.1:{port}/v1
      api_key: sk-test
router_settings: {{num_retries: 0}}
"""


async def test_an_evaluation_past_its_deadline_is_stopped_and_a_bad_judge_fails_at_once(
    analytics_env: dict[str, str],
    nc: NatsClient,
    tenant: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The judge is an LLM whose server never answers: the evaluation ends `time_limit` at its
    deadline (20 s: the first LLM judge imports LiteLLM) instead of running on. A judge model
    that is not configured fails at once."""
    held: list[asyncio.StreamWriter] = []

    async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)
        await reader.read(65536)

    server = await asyncio.start_server(never_answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    config = tmp_path / "models.yaml"
    config.write_text(HANGING_MODELS.format(port=port))
    monkeypatch.setenv("AGENTBUS_MODELS_CONFIG", str(config))
    await nc.jetstream().publish(s.TELEMETRY_RUN_FINISHED, recorded(tenant, "r1"))
    try:
        service = build(AnalyticsSettings())
        async with running(service):
            await runs_stored(nc, tenant, 1)
            slow = request(
                tenant, metrics=["relevancy"], deadline=datetime.now(UTC) + timedelta(seconds=20)
            )
            await submit(nc, slow)
            stopped = await outcome(nc, slow.evaluation_id)
            assert (stopped.status, stopped.failure) == ("failed", "time_limit")
            assert stopped.error == FAILURES["time_limit"]
            assert held, "the judge never called the model"
            await settled(nc)

        monkeypatch.setenv("AGENTBUS_EVAL_MODEL", "nomodel")
        service = build(AnalyticsSettings())
        async with running(service):
            job = request(tenant)
            await submit(nc, job)
            bad = await outcome(nc, job.evaluation_id)
            assert (bad.failure, bad.error) == (
                "judge_misconfigured",
                FAILURES["judge_misconfigured"],
            )
            await settled(nc)
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()


def test_a_report_too_big_for_one_message_is_shortened_and_says_so() -> None:
    judge = JudgeInfo(kind="heuristic", model="local/extractive", note="n")
    runs = [
        RunReport(
            run_id=f"r{i}",
            trace_id=None,
            thread_id="t",
            assistant_id="a",
            status="success",
            ts="2026-01-01T00:00:00Z",
            question="q",
            scores={
                "relevancy": ScoreEntry(
                    score=0.5, judge="heuristic", judge_model=None, reason="x" * 2000
                )
            },
        )
        for i in range(40)
    ]
    report = EvalReport(
        evaluation_id="e", tenant_id="t", created_at="now", since_hours=1, judge=judge, runs=runs
    )
    size = len(report.model_dump_json())
    assert fitted(report, size) is report
    shorter = fitted(report, size // 4)
    assert len(shorter.model_dump_json()) <= size // 4 and len(shorter.runs) == 40
    assert shorter.truncated and "reasons shortened" in shorter.truncated
    assert report.runs[0].scores["relevancy"].reason == "x" * 2000  # the original is kept
    tiny = fitted(report, 2000)
    assert tiny.runs == [] and tiny.truncated and "run_evaluations" in tiny.truncated


async def test_the_handlers_under_faststreams_test_broker(
    analytics_env: dict[str, str], nc: NatsClient, tenant: str
) -> None:
    """The same handlers under FastStream's TestNatsBroker, on the real NATS (`with_real`): the
    subscriber's mock sees each work item, junk is rejected and counted, an unreadable metrics
    request is answered with an ErrorReply."""
    service = build(AnalyticsSettings())
    for hook in service.on_startup:  # the ClickHouse store the handlers read
        await hook()
    try:
        async with TestNatsBroker(service.broker, with_real=True) as broker:
            (work,) = [
                sub
                for sub in service.broker.subscribers
                if sub.subject.broker_address == s.EVALUATIONS_SUBMIT
            ]
            expired = request(tenant, deadline=datetime.now(UTC) - timedelta(minutes=1))
            await broker.publish(b"{not json", s.EVALUATIONS_SUBMIT, stream="EVALUATIONS")
            await broker.publish(
                expired.model_dump_json(),
                s.EVALUATIONS_SUBMIT,
                stream="EVALUATIONS",
                headers={"Nats-Msg-Id": expired.evaluation_id},
            )
            late = await outcome(nc, expired.evaluation_id)
            assert (late.failure, late.error) == ("expired", FAILURES["expired"])
            assert service.rejects.value(s.EVALUATIONS_SUBMIT, "invalid_json") >= 1
            # The handler's mock saw both items, in order, as they travelled.
            seen = [call.args[0] for call in work.calls[0].handler.mock.call_args_list]
            as_bytes = [b if isinstance(b, bytes) else str(b).encode() for b in seen]
            assert as_bytes == [b"{not json", expired.model_dump_json().encode()], seen

            reply = await broker.request(b"[]", s.EVALUATIONS_METRICS, timeout=10)
            assert ErrorReply.model_validate(await reply.decode()).reason == "schema"
            reply = await broker.request(
                EvaluationMetricsRequest(tenant_id=tenant).model_dump_json(),
                s.EVALUATIONS_METRICS,
                timeout=10,
            )
            assert EvaluationMetrics.model_validate(await reply.decode()).metrics
        await settled(nc)
    finally:
        for hook in service.on_shutdown:
            await hook()


async def test_an_outcome_the_bus_refuses_is_stored_once_it_accepts_without_redoing_the_work(
    analytics_env: dict[str, str], nc: NatsClient, tenant: str
) -> None:
    """EVALUATION_EVENTS refusing every publish (its maximum message size lowered, as a full
    stream refuses): the scores are stored, the outcome waits in the worker, which keeps the item
    and asks again, and once the stream accepts the outcome is there, from the first attempt."""
    js = nc.jetstream()
    await js.publish(s.TELEMETRY_RUN_FINISHED, recorded(tenant, "r1"))
    config = (await js.stream_info(EVALUATION_EVENTS.name)).config
    service = build(AnalyticsSettings())
    async with running(service):
        await runs_stored(nc, tenant, 1)
        await js.update_stream(dataclasses.replace(config, max_msg_size=16))
        try:
            job = request(tenant, metrics=["conciseness"])
            await submit(nc, job)

            async def scored() -> bool:
                rows = as_dicts(
                    await ask(nc, tenant, "evaluations", evaluation_id=job.evaluation_id)
                )
                return [(r["metric"], r["runs"]) for r in rows] == [("conciseness", 1)]

            await eventually(scored, timeout=150, what="the stored score")
            await asyncio.sleep(2)  # the outcome refused at least once meanwhile
            assert await last_event(nc, job.evaluation_id) is None
        finally:
            await js.update_stream(config)
        restored_at = time.monotonic()
        done = await outcome(nc, job.evaluation_id)
        print(f"\noutcome stored {time.monotonic() - restored_at:.1f}s after the stream accepted")
        assert done.status == "done" and done.report is not None
        assert [r["run_id"] for r in done.report["runs"]] == ["r1"]
        await settled(nc)
    # Nothing was redone: no progress of a second attempt follows the refusal.
    bodies = await events_to_outcome(nc, job.evaluation_id)
    assert all(b["attempt"] == 1 for b in bodies[:-1]), bodies
