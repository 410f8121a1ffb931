"""Evaluations over HTTP: `POST /api/v1/evaluations` does what `agentbus eval` does, in the
background, and `GET /api/v1/evaluations/{id}` reads its status, progress and report.

The work runs in the analytics service, behind the bus, so it works in every deployment (the
gateway needs neither the analytics package nor chDB):

- POST checks the request (named metrics against the ones analytics knows, asked on
  `agentbus.v1.evaluations.metrics`; one evaluation at a time per tenant), records the job in
  PostgreSQL (`evaluation_jobs`, status `running`, with a deadline `EVALUATION_TIME_LIMIT_S`
  ahead) and publishes `EvaluationRequested` to the JetStream work queue `EVALUATIONS`
  (`Nats-Msg-Id = evaluation_id`). Analytics' durable consumer runs it and publishes progress and
  the outcome on `agentbus.v1.evaluations.events.<evaluation_id>` (see
  `agentbus.analytics.evaluation_jobs` for why a work item, not a request/reply).
- Status and report stay in this table, so any replica answers the GET: asked about a running
  job, a replica reads the last message of the job's subject (stream `EVALUATION_EVENTS`) and
  records an `EvaluationFinished` it finds (done with its report, or failed with its fixed
  sentence). A job still running `DEADLINE_GRACE_S` after its deadline is marked failed
  (`worker_lost`): analytics stops or refuses work past the deadline, so no outcome can follow,
  and a job whose last worker died is not left `running` forever.
- `error` is always one of the fixed sentences of `agentbus.contracts.evaluations.FAILURES`;
  exception text stays in the services' logs.
"""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from typing import Any

import asyncpg
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from nats.errors import Error as NatsError
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.errors import Error as JetStreamError
from nats.js.errors import NotFoundError
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agentbus.contracts import ErrorReply, new_id, utcnow
from agentbus.contracts import subjects as s
from agentbus.contracts.evaluations import (
    FAILURES,
    MAX_EVALUATION_RUNS,
    MAX_SINCE_HOURS,
    EvaluationFinished,
    EvaluationMetrics,
    EvaluationMetricsRequest,
    EvaluationProgress,
    EvaluationRequested,
)
from agentbus.contracts.streams import EVALUATION_EVENTS
from agentbus.runtime.migrations import Migration
from agentbus.runtime.stores.schema import LockKey, migrate
from agentbus.runtime.traces import nats_span

from ..auth.deps import AdminPrincipal, CurrentPrincipal
from ..ratelimit import per_tenant
from ..upstream import UpstreamError

log = logging.getLogger("agentbus.gateway.evaluations")

router = APIRouter(prefix="/api/v1", tags=["evaluations"])
Auth = CurrentPrincipal

# How long an evaluation may take, all attempts together; analytics stops it then.
EVALUATION_TIME_LIMIT_S = 3600.0
# After the deadline, time for an outcome analytics published at the last moment to be read.
DEADLINE_GRACE_S = 120.0
REQUEST_TIMEOUT_S = 10.0

SCHEMA = """
CREATE TABLE IF NOT EXISTS evaluation_jobs (
    tenant_id      text NOT NULL,
    evaluation_id  text NOT NULL,
    status         text NOT NULL DEFAULT 'running',
    params         jsonb NOT NULL,
    report         jsonb,
    error          text,
    created_by     text,
    created_at     timestamptz NOT NULL DEFAULT now(),
    finished_at    timestamptz,
    PRIMARY KEY (tenant_id, evaluation_id)
);
ALTER TABLE evaluation_jobs ADD COLUMN IF NOT EXISTS deadline timestamptz;
"""

MIGRATIONS = (Migration(1, "evaluation jobs", (SCHEMA,)),)
# Rows from before the deadline column (evaluations the gateway ran itself) had an hour.
DEADLINE = "coalesce(deadline, created_at + interval '1 hour')"


class EvaluationCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    since_hours: float = Field(default=24, gt=0, le=MAX_SINCE_HOURS)
    metrics: list[str] | None = Field(default=None, max_length=50, description="None: all")
    limit: int = Field(
        default=50, ge=1, le=MAX_EVALUATION_RUNS, description="The latest runs to judge"
    )


async def ensure_schema(pool: asyncpg.Pool) -> None:
    await migrate(pool, LockKey.EVALUATIONS, MIGRATIONS)


def _pool(request: Request) -> asyncpg.Pool:
    pool: asyncpg.Pool = request.app.state.store.pool
    return pool


async def _known_metrics(request: Request, tenant: str) -> set[str]:
    """The metric names analytics can judge (a 503 when no analytics answers)."""
    nc = request.app.state.runs.nc
    body = EvaluationMetricsRequest(tenant_id=tenant).model_dump_json().encode()
    try:
        with nats_span(s.EVALUATIONS_METRICS, "request") as headers:
            msg = await nc.request(
                s.EVALUATIONS_METRICS, body, timeout=REQUEST_TIMEOUT_S, headers=headers
            )
    except (NoRespondersError, NatsTimeoutError):
        raise HTTPException(503, "The analytics service is not available; try again") from None
    try:
        reply = EvaluationMetrics.model_validate_json(msg.data)
    except ValidationError:
        try:
            error = ErrorReply.model_validate_json(msg.data)
        except ValidationError:
            raise UpstreamError("Listing evaluation metrics", "unreadable_reply") from None
        raise UpstreamError("Listing evaluation metrics", error.reason, error.error) from None
    if reply.error is not None:
        raise UpstreamError("Listing evaluation metrics", "metrics_unavailable", reply.error)
    return {m.name for m in reply.metrics}


async def _settle(app: FastAPI, tenant: str, evaluation_id: str) -> dict[str, int] | None:
    """Record the outcome of a running evaluation if analytics published it, or its failure if
    its deadline has passed without one. Returns its latest progress, if any."""
    pool: asyncpg.Pool = app.state.store.pool
    js = app.state.runs.js
    try:
        msg = await js.get_last_msg(EVALUATION_EVENTS.name, s.evaluation_events(evaluation_id))
    except (NotFoundError, s.SubjectError):
        msg = None
    except (NatsError, JetStreamError):
        log.warning("could not read evaluation events", extra={"evaluation_id": evaluation_id})
        msg = None
    data = msg.data if msg is not None and msg.data else b""
    finished: EvaluationFinished | None = None
    progress: EvaluationProgress | None = None
    if data:
        try:
            finished = EvaluationFinished.model_validate_json(data)
        except ValidationError:
            try:
                progress = EvaluationProgress.model_validate_json(data)
            except ValidationError:
                log.warning("unreadable evaluation event", extra={"evaluation_id": evaluation_id})
    if finished is not None and finished.tenant_id == tenant:
        error = None
        if finished.status == "failed":
            error = FAILURES[finished.failure or "internal"]
        await pool.execute(
            "UPDATE evaluation_jobs SET status = $3, report = $4::jsonb, error = $5,"
            " finished_at = now() WHERE tenant_id = $1 AND evaluation_id = $2"
            " AND status = 'running'",
            tenant,
            evaluation_id,
            finished.status,
            json.dumps(finished.report) if finished.report is not None else None,
            error,
        )
        return None
    await pool.execute(
        "UPDATE evaluation_jobs SET status = 'failed', error = $3, finished_at = now()"
        " WHERE tenant_id = $1 AND evaluation_id = $2 AND status = 'running'"
        f" AND {DEADLINE} < now() - make_interval(secs => $4)",
        tenant,
        evaluation_id,
        FAILURES["worker_lost"],
        DEADLINE_GRACE_S,
    )
    if progress is not None and progress.tenant_id == tenant:
        return {"done": progress.done, "total": progress.total}
    return None


@router.post(
    "/evaluations",
    status_code=202,
    summary="Evaluate the tenant's recent runs in the background (as `agentbus eval`)",
    dependencies=[Depends(per_tenant("analytics"))],
    responses={
        403: {"description": "The caller lacks the 'admin' scope"},
        409: {"description": "An evaluation of the tenant is still running"},
        422: {"description": "Invalid options or an unknown metric"},
        503: {"description": "The analytics service or the bus is not available"},
    },
)
async def start_evaluation(
    request: Request, req: EvaluationCreate, principal: AdminPrincipal
) -> dict[str, Any]:
    tenant = principal.tenant_id
    if req.metrics:
        known = await _known_metrics(request, tenant)
        unknown = [m for m in req.metrics if m not in known]
        if unknown:
            raise HTTPException(
                422,
                f"unknown metric(s) {', '.join(unknown)}; available: {', '.join(sorted(known))}",
            )
    pool = _pool(request)
    running = await pool.fetch(
        "SELECT evaluation_id FROM evaluation_jobs WHERE tenant_id = $1 AND status = 'running'",
        tenant,
    )
    for row in running:
        await _settle(request.app, tenant, row["evaluation_id"])
    busy = await pool.fetchval(
        "SELECT evaluation_id FROM evaluation_jobs WHERE tenant_id = $1 AND status = 'running'"
        " LIMIT 1",
        tenant,
    )
    if busy is not None:
        # One at a time per tenant: each one judges every recent run with every metric.
        raise HTTPException(409, f"Evaluation {busy} is still running")
    evaluation_id = new_id()
    deadline = utcnow() + timedelta(seconds=EVALUATION_TIME_LIMIT_S)
    created_by = principal.user_id or f"api_key:{principal.api_key_id}"
    await pool.execute(
        "INSERT INTO evaluation_jobs (tenant_id, evaluation_id, params, created_by, deadline)"
        " VALUES ($1, $2, $3::jsonb, $4, $5)",
        tenant,
        evaluation_id,
        req.model_dump_json(),
        created_by,
        deadline,
    )
    job = EvaluationRequested(
        tenant_id=tenant,
        evaluation_id=evaluation_id,
        since_hours=req.since_hours,
        metrics=req.metrics,
        limit=req.limit,
        deadline=deadline,
        requested_by=created_by[:200],
    )
    try:
        with nats_span(s.EVALUATIONS_SUBMIT, "publish", {"Nats-Msg-Id": evaluation_id}) as headers:
            await request.app.state.runs.js.publish(
                s.EVALUATIONS_SUBMIT,
                job.model_dump_json().encode(),
                timeout=REQUEST_TIMEOUT_S,
                headers=headers,
            )
    except (NatsError, JetStreamError) as exc:
        log.warning(
            "could not queue the evaluation",
            extra={"evaluation_id": evaluation_id, "reason": f"{type(exc).__name__}: {exc}"},
        )
        await pool.execute(
            "DELETE FROM evaluation_jobs WHERE tenant_id = $1 AND evaluation_id = $2",
            tenant,
            evaluation_id,
        )
        raise HTTPException(503, "The evaluation could not be queued; try again") from None
    return {
        "evaluation_id": evaluation_id,
        "status": "running",
        "url": f"/api/v1/evaluations/{evaluation_id}",
    }


@router.get(
    "/evaluations/{evaluation_id}",
    summary="An evaluation's status, its progress while running and, once done, its report",
    responses={404: {"description": "No such evaluation for this tenant"}},
)
async def get_evaluation(evaluation_id: str, request: Request, principal: Auth) -> dict[str, Any]:
    query = (
        "SELECT evaluation_id, status, params, report, error, created_at, finished_at"
        " FROM evaluation_jobs WHERE tenant_id = $1 AND evaluation_id = $2"
    )
    tenant = principal.tenant_id
    row = await _pool(request).fetchrow(query, tenant, evaluation_id)
    if row is None:
        raise HTTPException(404, "Evaluation not found")
    progress = None
    if row["status"] == "running":
        progress = await _settle(request.app, tenant, evaluation_id)
        row = await _pool(request).fetchrow(query, tenant, evaluation_id)
        assert row is not None

    def parsed(value: Any) -> Any:
        return json.loads(value) if isinstance(value, str) else value

    return {
        "evaluation_id": row["evaluation_id"],
        "status": row["status"],
        "params": parsed(row["params"]),
        "progress": progress if row["status"] == "running" else None,
        "error": row["error"],
        "report": parsed(row["report"]),
        "created_at": row["created_at"].isoformat(),
        "finished_at": row["finished_at"].isoformat() if row["finished_at"] else None,
    }
