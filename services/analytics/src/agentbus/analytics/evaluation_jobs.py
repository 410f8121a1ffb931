"""Evaluations asked for over HTTP, run here: `POST /api/v1/evaluations` in every deployment.

The gateway publishes an `EvaluationRequested` work item to the JetStream work queue
`EVALUATIONS`; this service's durable `analytics-evaluations` pulls it and runs the same code as
`agentbus eval` (`evals.runner.evaluate`: the same metric files and judges, each score published
as `EvaluationScored` and stored here), for the request's tenant only. Progress and the outcome
(`EvaluationProgress`, then `EvaluationFinished` with the report or a fixed failure sentence)
go to `agentbus.v1.evaluations.events.<evaluation_id>` (stream `EVALUATION_EVENTS`).

Why a JetStream work item, not a request/reply that starts a background task:
- an evaluation takes minutes. A request would be answered by whichever replica took it and
  the job would die with that replica; a work item stays in the stream until a worker acks it
  after publishing the outcome, so a worker that dies mid-evaluation is replaced by a redelivery
  after the consumer's ack wait (30 s; `in_progress()` heartbeats keep a live one), and the
  scores it had published are not stored twice (their message and event ids are derived from
  evaluation, run and metric);
- the request carries a `deadline` (the gateway's time limit). A delivery after it is not
  started, a run past it is stopped: both end as `failed`. Together with the bounded
  `max_deliver` this bounds how long an evaluation can be `running`: if the last worker dies
  too, the gateway marks it failed (`worker_lost`) once the deadline has passed without an
  outcome, so nothing stays running forever.
- recorded runs are read from this service's own store (the `recorded_runs` query, called
  in-process), not over the bus: no request to itself, no message size limit on the runs.

Status and report live where the HTTP API keeps them: the gateway's PostgreSQL table
`evaluation_jobs`. The gateway reads the last message of the evaluation's subject when asked
about a running one (any replica can) and records the outcome there; analytics stores nothing
but the scores (ClickHouse `evaluations`).

Failures are one of `agentbus.contracts.evaluations.FAILURES`' fixed sentences; exception text
goes to this service's log only. Bad metrics or judge configuration fail at once (a retry cannot
help); anything else (ClickHouse, the bus) is retried with the consumer's NAK delays and fails on
the last delivery. An outcome the bus refuses is asked again in place until the deadline (the
evaluation is not redone). An unreadable work item is rejected (terminated) and counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime

import nats.errors
from faststream.nats.message import NatsMessage
from nats.js.errors import Error as JetStreamError

from agentbus.contracts import AnalyticsQuery, utcnow
from agentbus.contracts import subjects as s
from agentbus.contracts.evaluations import (
    EvaluationFailure,
    EvaluationFinished,
    EvaluationMetric,
    EvaluationMetrics,
    EvaluationMetricsRequest,
    EvaluationProgress,
    EvaluationRequested,
    failed,
)
from agentbus.contracts.streams import ANALYTICS_EVALUATIONS
from agentbus.runtime.chassis import Service
from agentbus.runtime.consuming import (
    decode_or_reject,
    delivery_count,
    heartbeat,
    is_last_delivery,
    nak_delay,
)
from agentbus.runtime.logs import log_context

from .evals.judges import JudgeError, choose_judge, orchestrator_models_config
from .evals.loader import MetricFileError, load_metrics, select
from .evals.runner import EvalError, EvalReport, evaluate, parse_runs
from .evals.settings import EvalSettings
from .queries import Queries, answer

log = logging.getLogger("agentbus.analytics.evaluations")

PROGRESS_EVERY_S = 2.0
PUBLISH_TIMEOUT_S = 10.0
# Between asks of a bus that refused an outcome; the last repeats until the job's deadline.
FINISH_RETRY_S = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
# Room left under the bus's message limit for headers and the event's own fields.
HEADROOM = 4096


class Failed(Exception):
    """An evaluation that ends as failed with `failure`; the cause is logged, never sent."""

    def __init__(self, failure: EvaluationFailure, permanent: bool) -> None:
        super().__init__(failure)
        self.failure: EvaluationFailure = failure
        self.permanent = permanent


def fitted(report: EvalReport, max_bytes: int) -> EvalReport:
    """The report, shortened until it fits one message: reasons first, then the per-run list.
    The per-metric summary and the counts always stay; `truncated` says what was cut."""
    if len(report.model_dump_json()) <= max_bytes:
        return report
    short = report.model_copy(deep=True)
    for run in short.runs:
        for entry in run.scores.values():
            entry.reason = entry.reason[:200]
    short.truncated = "score reasons shortened to 200 characters to fit the bus's message limit"
    if len(short.model_dump_json()) <= max_bytes:
        return short
    short.runs = []
    short.errors = short.errors[:50]
    short.skipped = short.skipped[:50]
    short.truncated = (
        "per-run scores left out to fit the bus's message limit; the scores are stored "
        "(analytics query run_evaluations with this evaluation_id)"
    )
    return short


class EvaluationJobs:
    def __init__(self, service: Service, queries: Queries, settings: EvalSettings) -> None:
        self.service = service
        self.queries = queries
        self.settings = settings

    # -- the metrics request -----------------------------------------------------------------

    async def metrics(self, req: EvaluationMetricsRequest) -> EvaluationMetrics:
        try:
            found = await asyncio.to_thread(load_metrics, self.settings.eval_metrics_dir)
        except MetricFileError as exc:
            log.error("metric files unusable", extra={"reason": str(exc)})
            return EvaluationMetrics(tenant_id=req.tenant_id, error="the metric files are invalid")
        return EvaluationMetrics(
            tenant_id=req.tenant_id,
            metrics=[
                EvaluationMetric(name=m.name, description=m.description) for m in found.values()
            ],
        )

    # -- the work item -----------------------------------------------------------------------

    async def handle(self, msg: NatsMessage) -> None:
        job = await decode_or_reject(msg, EvaluationRequested, self.service.rejects)
        if job is None:
            return
        with log_context(tenant_id=job.tenant_id):
            left = (job.deadline - utcnow()).total_seconds()
            if left <= 0:
                log.warning("evaluation expired", extra={"evaluation_id": job.evaluation_id})
                await self._finish(
                    msg, failed(job.tenant_id, job.evaluation_id, "expired"), job.deadline
                )
                return
            async with heartbeat(msg, ANALYTICS_EVALUATIONS):
                outcome = await self._attempt(msg, job, left)
                if outcome is not None:
                    await self._finish(msg, outcome, job.deadline)

    async def _attempt(
        self, msg: NatsMessage, job: EvaluationRequested, left: float
    ) -> EvaluationFinished | None:
        """The outcome to publish, or None after a NAK (the attempt is retried)."""
        budget = asyncio.timeout(left)
        last = is_last_delivery(msg, ANALYTICS_EVALUATIONS)
        try:
            async with budget:
                report = await self.run(job, delivery_count(msg))
        except Failed as exc:
            if not exc.permanent and not last:
                await msg.nack(delay=nak_delay(msg, ANALYTICS_EVALUATIONS))
                return None
            return failed(job.tenant_id, job.evaluation_id, exc.failure)
        except Exception as exc:
            if isinstance(exc, TimeoutError) and budget.expired():
                log.warning("evaluation over its deadline", extra=self._ids(job))
                return failed(job.tenant_id, job.evaluation_id, "time_limit")
            log.exception("evaluation attempt failed", extra=self._ids(job))
            if not last:
                await msg.nack(delay=nak_delay(msg, ANALYTICS_EVALUATIONS))
                return None
            return failed(job.tenant_id, job.evaluation_id, "internal")
        max_bytes = self.service.connection.max_payload - HEADROOM
        return EvaluationFinished(
            tenant_id=job.tenant_id,
            evaluation_id=job.evaluation_id,
            status="done",
            report=fitted(report, max_bytes).model_dump(mode="json"),
        )

    @staticmethod
    def _ids(job: EvaluationRequested) -> dict[str, str]:
        return {"evaluation_id": job.evaluation_id, "tenant_id": job.tenant_id}

    async def _finish(
        self, msg: NatsMessage, outcome: EvaluationFinished, deadline: datetime
    ) -> None:
        """Store the outcome, then ack.

        The report is paid for (minutes of judging), so a bus that refuses it (EVALUATION_EVENTS
        full, a leader election) is asked again in place, heartbeating, until the job's deadline,
        instead of NAKing and redoing the evaluation. Past the deadline the item goes back, or on
        its last delivery ends: the gateway then reports `worker_lost`, as for a dead worker.
        """
        delays = iter(FINISH_RETRY_S)
        while True:
            try:
                await self._publish(
                    s.evaluation_events(outcome.evaluation_id),
                    outcome.model_dump_json().encode(),
                    f"{outcome.evaluation_id}:finished",
                )
                break
            except (nats.errors.Error, JetStreamError, TimeoutError) as exc:
                wait = next(delays, FINISH_RETRY_S[-1])
                if (deadline - utcnow()).total_seconds() <= wait:
                    log.exception("could not publish the evaluation's outcome by its deadline")
                    if is_last_delivery(msg, ANALYTICS_EVALUATIONS):
                        await msg.reject()
                    else:
                        await msg.nack(delay=nak_delay(msg, ANALYTICS_EVALUATIONS))
                    return
                log.warning(
                    "the bus did not take the evaluation's outcome; asking again",
                    extra={
                        "evaluation_id": outcome.evaluation_id,
                        "error": repr(exc),
                        "in_s": wait,
                    },
                )
                await asyncio.sleep(wait)
        await msg.ack()

    async def _publish(self, subject: str, body: bytes, msg_id: str) -> None:
        js = self.service.connection.jetstream()
        await js.publish(subject, body, timeout=PUBLISH_TIMEOUT_S, headers={"Nats-Msg-Id": msg_id})

    async def run(self, job: EvaluationRequested, attempt: int) -> EvalReport:
        settings = self.settings
        try:
            metrics = select(
                await asyncio.to_thread(load_metrics, settings.eval_metrics_dir), job.metrics
            )
        except MetricFileError as exc:
            log.error("evaluation metrics unusable", extra={**self._ids(job), "reason": str(exc)})
            raise Failed("unknown_metric", permanent=True) from None
        try:
            # In a thread: the first LLM judge imports LiteLLM, seconds of work.
            judge = await asyncio.to_thread(
                choose_judge,
                settings.eval_model,
                settings.models_config or orchestrator_models_config(),
            )
        except JudgeError as exc:
            log.error("evaluation judge unusable", extra={**self._ids(job), "reason": str(exc)})
            raise Failed("judge_misconfigured", permanent=True) from None
        query = AnalyticsQuery(
            tenant_id=job.tenant_id,
            name="recorded_runs",
            params={"since_hours": job.since_hours, "limit": job.limit},
        )
        try:
            runs, unreadable = parse_runs(await answer(self.queries, query))
        except Exception as exc:
            log.error(
                "recorded runs unreadable", extra={**self._ids(job), "reason": repr(exc)[:500]}
            )
            raise Failed("runs_unreadable", permanent=False) from None

        state = {"done": 0, "total": len(runs)}
        changed = asyncio.Event()

        def progress(done: int, total: int) -> None:
            state.update(done=done, total=total)
            changed.set()

        async def publish_progress() -> None:
            while True:
                await changed.wait()
                changed.clear()
                event = EvaluationProgress(
                    tenant_id=job.tenant_id,
                    evaluation_id=job.evaluation_id,
                    done=state["done"],
                    total=state["total"],
                    attempt=attempt,
                )
                with contextlib.suppress(nats.errors.Error, JetStreamError, TimeoutError):
                    await self._publish(
                        s.evaluation_events(job.evaluation_id),
                        event.model_dump_json().encode(),
                        f"{job.evaluation_id}:{attempt}:{event.done}/{event.total}",
                    )
                await asyncio.sleep(PROGRESS_EVERY_S)

        reporter = asyncio.create_task(publish_progress())
        try:
            report = await evaluate(
                self.service.connection,
                tenant_id=job.tenant_id,
                since_hours=job.since_hours,
                runs=runs,
                metrics=metrics,
                judge=judge,
                evaluation_id=job.evaluation_id,
                concurrency=settings.eval_concurrency,
                timeout=PUBLISH_TIMEOUT_S,
                progress=progress,
            )
        except EvalError as exc:  # a score that could not be stored on the bus
            log.error("evaluation scores not stored", extra={**self._ids(job), "reason": str(exc)})
            raise Failed("scores_not_stored", permanent=False) from None
        finally:
            # Stopped before the outcome is published, so the outcome stays the last message.
            reporter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reporter
        report.skipped.extend(unreadable)
        return report
