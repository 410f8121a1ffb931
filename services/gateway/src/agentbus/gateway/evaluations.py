"""Evaluations over HTTP: `POST /api/v1/evaluations` does what `agentbus eval` does, in the
background, and `GET /api/v1/evaluations/{id}` reads its report.

The evaluation code is the CLI's (`agentbus.analytics.evals`: recorded runs from analytics'
`recorded_runs`, the same metric files and judges, each score published as `EvaluationScored`),
run by the gateway that accepted the request, for the caller's tenant only. It needs the
`agentbus-analytics` package installed next to the gateway, as `agentbus up` and the dev install
have it; the gateway's container image does not (chDB is not allowed in it), and answers 503
there. Moving the evaluation behind an analytics request subject would lift that. Status and report
are kept in PostgreSQL (`evaluation_jobs`), so any replica answers the GET. A gateway that stops
mid-evaluation leaves it `running` until the next start marks it `failed`.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import asyncpg
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from pydantic import BaseModel, ConfigDict, Field

from agentbus.contracts import new_id
from agentbus.runtime.settings import load

from .auth.deps import AdminPrincipal, CurrentPrincipal
from .ratelimit import per_tenant

log = logging.getLogger("agentbus.gateway.evaluations")

router = APIRouter(prefix="/api/v1", tags=["evaluations"])
Auth = CurrentPrincipal

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
"""
MAX_SINCE_HOURS = 366 * 24


class EvaluationCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    since_hours: float = Field(default=24, gt=0, le=MAX_SINCE_HOURS)
    metrics: list[str] | None = Field(default=None, max_length=50, description="None: all")
    limit: int = Field(default=50, ge=1, le=500, description="The latest runs to judge")


async def ensure_schema(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(727020)")
        await conn.execute(SCHEMA)
        # Whoever ran these stopped before finishing them (see the module docstring).
        await conn.execute(
            "UPDATE evaluation_jobs SET status = 'failed', finished_at = now(),"
            " error = 'the gateway running it stopped' WHERE status = 'running'"
            " AND created_at < now() - interval '1 hour'"
        )


def _pool(request: Request) -> asyncpg.Pool:
    pool: asyncpg.Pool = request.app.state.store.pool
    return pool


async def _evaluate(
    app: FastAPI, tenant: str, evaluation_id: str, req: EvaluationCreate, metrics: list[Any]
) -> None:
    from agentbus.analytics.evals.judges import choose_judge, orchestrator_models_config
    from agentbus.analytics.evals.runner import evaluate, fetch_runs
    from agentbus.analytics.evals.settings import EvalSettings

    pool, nc = app.state.store.pool, app.state.runs.nc
    try:
        settings = load(EvalSettings)
        judge = choose_judge(
            settings.eval_model, settings.models_config or orchestrator_models_config()
        )
        runs, unreadable = await fetch_runs(nc, tenant, req.since_hours, req.limit, 30.0)
        report = await evaluate(
            nc,
            tenant_id=tenant,
            since_hours=req.since_hours,
            runs=runs,
            metrics=metrics,
            judge=judge,
            evaluation_id=evaluation_id,
            concurrency=settings.eval_concurrency,
        )
        report.skipped.extend(unreadable)
        await pool.execute(
            "UPDATE evaluation_jobs SET status = 'done', report = $3::jsonb, finished_at = now()"
            " WHERE tenant_id = $1 AND evaluation_id = $2",
            tenant,
            evaluation_id,
            report.model_dump_json(),
        )
    except Exception as exc:
        log.exception("evaluation failed", extra={"evaluation_id": evaluation_id})
        await pool.execute(
            "UPDATE evaluation_jobs SET status = 'failed', error = $3, finished_at = now()"
            " WHERE tenant_id = $1 AND evaluation_id = $2",
            tenant,
            evaluation_id,
            f"{type(exc).__name__}: {exc}"[:1000],
        )


@router.post(
    "/evaluations",
    status_code=202,
    summary="Evaluate the tenant's recent runs in the background (as `agentbus eval`)",
    dependencies=[Depends(per_tenant("analytics"))],
    responses={
        403: {"description": "The caller lacks the 'admin' scope"},
        409: {"description": "An evaluation of the tenant is still running"},
    },
)
async def start_evaluation(
    request: Request, req: EvaluationCreate, principal: AdminPrincipal
) -> dict[str, Any]:
    try:
        from agentbus.analytics.evals.loader import MetricFileError, load_metrics, select
        from agentbus.analytics.evals.settings import EvalSettings
    except ImportError:
        # The container image holds the gateway alone (see the module docstring).
        raise HTTPException(
            503, "Evaluations need the agentbus-analytics package next to this gateway"
        ) from None
    try:
        metrics = select(load_metrics(load(EvalSettings).eval_metrics_dir), req.metrics)
    except MetricFileError as exc:
        raise HTTPException(422, str(exc)) from None
    evaluation_id = new_id()
    tenant = principal.tenant_id
    busy = await _pool(request).fetchval(
        "SELECT evaluation_id FROM evaluation_jobs WHERE tenant_id = $1 AND status = 'running'"
        " AND created_at > now() - interval '1 hour' LIMIT 1",
        tenant,
    )
    if busy is not None:
        # One at a time per tenant: each one judges every recent run with every metric.
        raise HTTPException(409, f"Evaluation {busy} is still running")
    await _pool(request).execute(
        "INSERT INTO evaluation_jobs (tenant_id, evaluation_id, params, created_by)"
        " VALUES ($1, $2, $3::jsonb, $4)",
        tenant,
        evaluation_id,
        req.model_dump_json(),
        principal.user_id or f"api_key:{principal.api_key_id}",
    )
    # Kept referenced until done: the event loop holds tasks only weakly.
    tasks: set[asyncio.Task[None]] | None = getattr(request.app.state, "evaluations", None)
    if tasks is None:
        tasks = request.app.state.evaluations = set()
    task = asyncio.create_task(_evaluate(request.app, tenant, evaluation_id, req, metrics))
    tasks.add(task)
    task.add_done_callback(tasks.discard)
    return {
        "evaluation_id": evaluation_id,
        "status": "running",
        "url": f"/api/v1/evaluations/{evaluation_id}",
    }


@router.get(
    "/evaluations/{evaluation_id}",
    summary="An evaluation's status and, once done, its report",
    responses={404: {"description": "No such evaluation for this tenant"}},
)
async def get_evaluation(evaluation_id: str, request: Request, principal: Auth) -> dict[str, Any]:
    row = await _pool(request).fetchrow(
        "SELECT evaluation_id, status, params, report, error, created_at, finished_at"
        " FROM evaluation_jobs WHERE tenant_id = $1 AND evaluation_id = $2",
        principal.tenant_id,
        evaluation_id,
    )
    if row is None:
        raise HTTPException(404, "Evaluation not found")

    def parsed(value: Any) -> Any:
        return json.loads(value) if isinstance(value, str) else value

    return {
        "evaluation_id": row["evaluation_id"],
        "status": row["status"],
        "params": parsed(row["params"]),
        "error": row["error"],
        "report": parsed(row["report"]),
        "created_at": row["created_at"].isoformat(),
        "finished_at": row["finished_at"].isoformat() if row["finished_at"] else None,
    }
