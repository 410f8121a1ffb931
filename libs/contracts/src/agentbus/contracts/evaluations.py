"""Evaluations requested over HTTP and run by analytics (`POST /api/v1/evaluations`).

- `EvaluationRequested` on `agentbus.v1.evaluations.submit` (stream `EVALUATIONS`, work queue,
  `Nats-Msg-Id = evaluation_id`): the gateway's work item, pulled by analytics' durable
  `analytics-evaluations`, which runs it as `agentbus eval` does for the tenant.
- `EvaluationProgress` and `EvaluationFinished` on `agentbus.v1.evaluations.events.<id>` (stream
  `EVALUATION_EVENTS`): the last message of an evaluation's subject is its state.
- `EvaluationMetricsRequest` -> `EvaluationMetrics` on `agentbus.v1.evaluations.metrics`: the
  metrics analytics can judge (built-in files plus `AGENTBUS_EVAL_METRICS_DIR`), so the gateway
  refuses an unknown one with a 422 before anything is queued.

A failed evaluation names one of `EvaluationFailure`'s codes; `FAILURES` holds the one sentence
each stands for, which is all a caller ever sees (exception text stays in analytics' logs).
"""

from __future__ import annotations

from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, Field

from .base import JsonObject, SubjectToken, TenantContract, Timestamp

MAX_SINCE_HOURS: Final = 366 * 24
MAX_EVALUATION_RUNS: Final = 500

EvaluationFailure = Literal[
    "expired",
    "time_limit",
    "unknown_metric",
    "judge_misconfigured",
    "runs_unreadable",
    "scores_not_stored",
    "internal",
    "worker_lost",
]
FAILURES: Final[dict[str, str]] = {
    "expired": "The evaluation waited past its deadline before an analytics worker took it.",
    "time_limit": "The evaluation did not finish within its time limit.",
    "unknown_metric": "A requested metric is unknown to analytics, or a metric file is invalid.",
    "judge_misconfigured": "The judge model of evaluations is not configured correctly.",
    "runs_unreadable": "Analytics could not read the tenant's recorded runs.",
    "scores_not_stored": "The evaluation's scores could not be stored on the bus.",
    "internal": "The evaluation failed unexpectedly; the analytics logs have the details.",
    "worker_lost": "No analytics worker finished the evaluation before its deadline "
    "(the worker running it may have stopped).",
}


class EvaluationRequested(TenantContract):
    """Judge the tenant's recent recorded runs, as `agentbus eval` does."""

    evaluation_id: SubjectToken
    since_hours: float = Field(default=24, gt=0, le=MAX_SINCE_HOURS)
    metrics: list[str] | None = Field(default=None, max_length=50, description="None: all")
    limit: int = Field(default=50, ge=1, le=MAX_EVALUATION_RUNS, description="Latest runs")
    deadline: Timestamp = Field(
        description="After this the evaluation is not started, or stopped, and counts as failed"
    )
    requested_by: str | None = Field(default=None, max_length=200)


class EvaluationProgress(TenantContract):
    """Runs judged so far, of the runs to judge, in delivery `attempt` of the work item."""

    evaluation_id: SubjectToken
    done: int = Field(ge=0)
    total: int = Field(ge=0)
    attempt: int = Field(default=1, ge=1)


class EvaluationFinished(TenantContract):
    """The outcome: the report (`done`), or a fixed reason (`failed`)."""

    evaluation_id: SubjectToken
    status: Literal["done", "failed"]
    report: JsonObject | None = Field(
        default=None, description="What `agentbus eval --json` prints (analytics' EvalReport)"
    )
    failure: EvaluationFailure | None = None
    error: str | None = Field(default=None, description="FAILURES[failure]")


class EvaluationMetricsRequest(TenantContract):
    """Which metrics can an evaluation of this tenant use?"""


class EvaluationMetric(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    name: str
    description: str = ""


class EvaluationMetrics(TenantContract):
    metrics: list[EvaluationMetric] = Field(default_factory=list)
    error: str | None = Field(default=None, description="Why the metrics could not be listed")


def failed(tenant_id: str, evaluation_id: str, failure: EvaluationFailure) -> EvaluationFinished:
    return EvaluationFinished(
        tenant_id=tenant_id,
        evaluation_id=evaluation_id,
        status="failed",
        failure=failure,
        error=FAILURES[failure],
    )
