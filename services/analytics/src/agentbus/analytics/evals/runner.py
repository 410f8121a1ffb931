"""Score recorded runs on every metric, publish the scores, and build the report.

- Runs come from the analytics query `recorded_runs` (RunFinished telemetry with the run's
  question, answer and retrieved contexts), for one tenant and period.
- Each run x metric is one `EvaluationScored` on `agentbus.v1.telemetry.evaluation_scored`
  (stream TELEMETRY) with `Nats-Msg-Id = evaluation_id:run_id:metric`, and an event id derived
  from the same key: a retried publish is dropped by JetStream's duplicate window, and a store
  that keys on the event id does not count it twice after the window either.
- A run without an answer (failed, cancelled, or an assistant that does not chat) is skipped
  with its reason; a judge failure on one run and metric is reported and does not stop the rest.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import nats.errors
from nats.aio.client import Client as NatsClient
from nats.js.errors import Error as JetStreamError
from pydantic import BaseModel, Field

from agentbus.contracts import AnalyticsQuery, AnalyticsResult, ErrorReply, EvaluationScored
from agentbus.contracts import subjects as s

from .judges import Judge, JudgeError
from .loader import Metric

RECORDED_COLUMNS = (
    "run_id",
    "trace_id",
    "thread_id",
    "assistant_id",
    "status",
    "ts",
    "question",
    "answer",
    "contexts",
)
MAX_RUNS = 1000  # the recorded_runs query's own limit
PUBLISH_ATTEMPTS = 3
_KEY_SPACE = uuid.UUID("5b0a3f64-6d0e-4d8e-9d0b-9f3c1f0a7e21")


class EvalError(RuntimeError):
    """An evaluation that cannot start or continue; the message is one line for the operator."""


@dataclass(frozen=True)
class RecordedRun:
    run_id: str
    trace_id: str | None
    thread_id: str
    assistant_id: str
    status: str
    ts: str
    question: str
    answer: str
    contexts: list[str]


# -- the report --------------------------------------------------------------------------------


class JudgeInfo(BaseModel):
    kind: str
    model: str | None
    note: str


class ScoreEntry(BaseModel):
    score: float
    judge: str
    judge_model: str | None
    reason: str


class RunReport(BaseModel):
    run_id: str
    trace_id: str | None
    thread_id: str
    assistant_id: str
    status: str
    ts: str
    question: str
    scores: dict[str, ScoreEntry] = Field(default_factory=dict)


class MetricSummary(BaseModel):
    name: str
    description: str
    judge: str
    runs: int
    mean_score: float | None
    min_score: float | None
    max_score: float | None
    errors: int


class Problem(BaseModel):
    run_id: str
    metric: str | None = None
    reason: str


class EvalReport(BaseModel):
    evaluation_id: str
    tenant_id: str
    created_at: str
    since_hours: float
    judge: JudgeInfo
    metrics: list[MetricSummary] = Field(default_factory=list)
    runs: list[RunReport] = Field(default_factory=list)
    skipped: list[Problem] = Field(default_factory=list)
    errors: list[Problem] = Field(default_factory=list)
    published: int = 0
    # Set when the report was shortened to travel on the bus (evaluations asked over HTTP).
    truncated: str | None = None


def judge_info(judge: Judge) -> JudgeInfo:
    if judge.kind == "heuristic":
        note = (
            f"HEURISTIC: the judge model {judge.model} is a local model that cannot grade, so "
            "each metric is scored by its documented heuristic (see the metric's `heuristic`), "
            "not by an LLM"
        )
    else:
        note = f"LLM-as-judge: {judge.model} graded each metric's prompt"
    return JudgeInfo(kind=judge.kind, model=judge.model, note=note)


# -- fetching recorded runs ----------------------------------------------------------------------


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def parse_runs(result: AnalyticsResult) -> tuple[list[RecordedRun], list[Problem]]:
    """Rows of `recorded_runs` as runs; rows that cannot be read are returned as problems."""
    index = {name: i for i, name in enumerate(result.columns)}
    missing = [c for c in RECORDED_COLUMNS if c not in index]
    if missing:
        raise EvalError(
            f"recorded_runs answered without column(s) {', '.join(missing)} "
            f"(got {', '.join(result.columns) or 'none'})"
        )
    runs: list[RecordedRun] = []
    problems: list[Problem] = []
    for row in result.rows:
        if len(row) != len(result.columns):
            problems.append(Problem(run_id="?", reason="row length does not match the columns"))
            continue
        value = {c: row[index[c]] for c in RECORDED_COLUMNS}
        run_id = _text(value["run_id"])
        raw = value["contexts"]
        try:
            contexts = json.loads(raw) if isinstance(raw, str) and raw else []
        except ValueError:
            contexts = None
        if not isinstance(contexts, list) or not all(isinstance(c, str) for c in contexts):
            problems.append(Problem(run_id=run_id, reason="contexts is not a JSON list of text"))
            continue
        runs.append(
            RecordedRun(
                run_id=run_id,
                trace_id=_text(value["trace_id"]) or None,
                thread_id=_text(value["thread_id"]),
                assistant_id=_text(value["assistant_id"]),
                status=_text(value["status"]),
                ts=_text(value["ts"]),
                question=_text(value["question"]),
                answer=_text(value["answer"]),
                contexts=contexts,
            )
        )
    return runs, problems


async def fetch_runs(
    nc: NatsClient, tenant_id: str, since_hours: float, limit: int, timeout: float
) -> tuple[list[RecordedRun], list[Problem]]:
    if not 1 <= limit <= MAX_RUNS:
        raise EvalError(f"limit must be 1..{MAX_RUNS}, got {limit}")
    query = AnalyticsQuery(
        tenant_id=tenant_id,
        name="recorded_runs",
        params={"since_hours": since_hours, "limit": limit},
    )
    try:
        reply = await nc.request(s.ANALYTICS_QUERY, query.model_dump_json().encode(), timeout)
    except nats.errors.NoRespondersError:
        raise EvalError(f"no analytics service answers {s.ANALYTICS_QUERY}") from None
    except nats.errors.TimeoutError:
        raise EvalError(f"analytics did not answer recorded_runs within {timeout:g}s") from None
    try:
        result = AnalyticsResult.model_validate_json(reply.data)
    except ValueError:
        try:
            error = ErrorReply.model_validate_json(reply.data).error
        except ValueError:
            error = f"unreadable reply {reply.data[:200]!r}"
        raise EvalError(f"analytics rejected recorded_runs: {error}") from None
    if result.error:
        raise EvalError(f"analytics could not answer recorded_runs: {result.error}")
    return parse_runs(result)


# -- scoring and publishing ----------------------------------------------------------------------


def message_key(evaluation_id: str, run_id: str, metric: str) -> str:
    return f"{evaluation_id}:{run_id}:{metric}"


async def publish_score(nc: NatsClient, scored: EvaluationScored, timeout: float) -> None:
    """Publish one score to JetStream, retrying: the message id makes a retry a no-op."""
    key = message_key(scored.evaluation_id, scored.run_id, scored.metric)
    body = scored.model_dump_json().encode()
    js = nc.jetstream()
    for attempt in range(1, PUBLISH_ATTEMPTS + 1):
        try:
            await js.publish(
                s.TELEMETRY_EVALUATION_SCORED, body, timeout=timeout, headers={"Nats-Msg-Id": key}
            )
            return
        except (nats.errors.TimeoutError, nats.errors.NoRespondersError, JetStreamError) as exc:
            if attempt == PUBLISH_ATTEMPTS:
                raise EvalError(
                    f"could not store the score {key}: {type(exc).__name__}: {exc}"
                ) from None
            await asyncio.sleep(0.5 * attempt)


Progress = Callable[[int, int], None]


async def evaluate(
    nc: NatsClient,
    *,
    tenant_id: str,
    since_hours: float,
    runs: list[RecordedRun],
    metrics: list[Metric],
    judge: Judge,
    evaluation_id: str,
    concurrency: int = 4,
    timeout: float = 30.0,
    progress: Progress | None = None,
    created_at: datetime | None = None,
) -> EvalReport:
    """Score every run on every metric, publish each score, and summarise."""
    from agentbus.contracts import utcnow

    report = EvalReport(
        evaluation_id=evaluation_id,
        tenant_id=tenant_id,
        created_at=(created_at or utcnow()).isoformat(),
        since_hours=since_hours,
        judge=judge_info(judge),
    )
    # A run recorded twice (its telemetry redelivered) is judged once.
    unique = list({r.run_id: r for r in runs}.values())
    todo = [r for r in unique if r.answer.strip()]
    for run in unique:
        if not run.answer.strip():
            report.skipped.append(
                Problem(run_id=run.run_id, reason=f"no recorded answer (status {run.status})")
            )
    gate = asyncio.Semaphore(concurrency)
    done = 0
    by_run: dict[str, RunReport] = {}

    async def one(run: RecordedRun) -> None:
        nonlocal done
        entry = RunReport(
            run_id=run.run_id,
            trace_id=run.trace_id,
            thread_id=run.thread_id,
            assistant_id=run.assistant_id,
            status=run.status,
            ts=run.ts,
            question=run.question,
        )
        async with gate:
            for metric in metrics:
                try:
                    score = await judge.score(metric, run.question, run.answer, run.contexts)
                except JudgeError as exc:
                    report.errors.append(
                        Problem(run_id=run.run_id, metric=metric.name, reason=str(exc))
                    )
                    continue
                scored = EvaluationScored(
                    id=uuid.uuid5(
                        _KEY_SPACE, message_key(evaluation_id, run.run_id, metric.name)
                    ).hex,
                    tenant_id=tenant_id,
                    evaluation_id=evaluation_id,
                    run_id=run.run_id,
                    trace_id=run.trace_id,
                    metric=metric.name,
                    score=score.score,
                    judge=score.judge,
                    judge_model=score.judge_model,
                    reason=score.reason[:2000],
                )
                await publish_score(nc, scored, timeout)
                report.published += 1
                entry.scores[metric.name] = ScoreEntry(
                    score=score.score,
                    judge=score.judge,
                    judge_model=score.judge_model,
                    reason=scored.reason,
                )
        by_run[run.run_id] = entry
        done += 1
        if progress is not None:
            progress(done, len(todo))

    if progress is not None:
        progress(0, len(todo))
    await asyncio.gather(*(one(r) for r in todo))
    report.runs = [by_run[r.run_id] for r in todo]  # in the order analytics listed them
    report.metrics = summarise(report, metrics, judge)
    return report


def summarise(report: EvalReport, metrics: list[Metric], judge: Judge) -> list[MetricSummary]:
    out = []
    for metric in metrics:
        values = [r.scores[metric.name].score for r in report.runs if metric.name in r.scores]
        out.append(
            MetricSummary(
                name=metric.name,
                description=metric.description,
                judge=judge.kind,
                runs=len(values),
                mean_score=round(sum(values) / len(values), 4) if values else None,
                min_score=min(values) if values else None,
                max_score=max(values) if values else None,
                errors=sum(1 for e in report.errors if e.metric == metric.name),
            )
        )
    return out
