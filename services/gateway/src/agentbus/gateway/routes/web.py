"""What the web app needs beyond the other routers: recent runs with their usage, one run's
trace as spans (for the waterfall), a document's stored bytes (citations open it at a page),
and the built app itself at `/` (static files with a fallback to index.html).

The trace comes from the same span files `agentbus traces` reads (`<data_dir>/traces`); with
`OTEL_EXPORTER_OTLP_ENDPOINT` set, spans go to a collector instead, so the answer says where to
look (`jaeger_url` when `AGENTBUS_JAEGER_URL` names the UI).
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, FastAPI, HTTPException, Query, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.errors import NotFoundError

from agentbus.contracts import AnalyticsQuery, AnalyticsResult
from agentbus.contracts import subjects as s
from agentbus.contracts.streams import DOCUMENTS
from agentbus.runtime.stores import documents
from agentbus.runtime.trace_view import Span, TraceViewError, find_run, load_spans

from ..auth.deps import CurrentPrincipal
from .history import decode_cursor, encode_cursor

router = APIRouter(prefix="/api/v1", tags=["web"])
Auth = CurrentPrincipal


async def _analytics(
    request: Request, tenant: str, name: str, **params: Any
) -> list[dict[str, Any]]:
    """Rows of a named analytics query as dicts; [] when analytics is down or refuses."""
    req = AnalyticsQuery(tenant_id=tenant, name=name, params=params)  # type: ignore[arg-type]
    try:
        msg = await request.app.state.runs.nc.request(
            s.ANALYTICS_QUERY, req.model_dump_json().encode(), timeout=10
        )
        result = AnalyticsResult.model_validate_json(msg.data)
    except (NoRespondersError, NatsTimeoutError, ValueError):
        return []
    if result.error is not None:
        return []
    return [dict(zip(result.columns, row, strict=False)) for row in result.rows]


RunStatusFilter = Literal[
    "pending", "running", "success", "error", "cancelled", "interrupted", "timeout"
]
OPEN_RUNS = ("pending", "running")


async def _settle_open_runs(request: Request, tenant: str) -> None:
    """Record how the tenant's recent open runs ended when no gateway followed them to the end
    (their `end` event stays in RUN_EVENTS for an hour), so a status filter and the duration
    are right. The run's end time is the event's, not now."""
    from ..turns import last_event  # turns imports the routers' modules

    pool = request.app.state.store.pool
    rows = await pool.fetch(
        "SELECT run_id FROM runs WHERE tenant_id = $1 AND status IN ('pending', 'running')"
        " AND created_at > now() - interval '1 hour' ORDER BY created_at DESC LIMIT 100",
        tenant,
    )
    for row in rows:
        event = await last_event(request.app.state.runs, row["run_id"])
        if event is None or event.type != "end" or event.tenant_id != tenant:
            continue
        await pool.execute(
            "UPDATE runs SET status = $3, updated_at = greatest(created_at, $4)"
            " WHERE tenant_id = $1 AND run_id = $2 AND status IN ('pending', 'running')",
            tenant,
            row["run_id"],
            event.status or "success",
            event.ts,
        )


@router.get(
    "/runs", summary="Your tenant's runs, newest first: status, duration, tokens, cost, scores"
)
async def recent_runs(
    request: Request,
    principal: Auth,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
    status: RunStatusFilter | None = None,
) -> dict[str, Any]:
    """A page of runs; `next_cursor` (null on the last page) continues after its last run."""
    tenant = principal.tenant_id
    after = decode_cursor(cursor) if cursor else None
    await _settle_open_runs(request, tenant)
    clauses, args = ["tenant_id = $1"], [tenant, limit + 1]
    if status is not None:
        args.append(status)
        clauses.append(f"status = ${len(args)}")
    if after is not None:
        args.extend(after)
        clauses.append(f"(created_at, run_id) < (${len(args) - 1}, ${len(args)})")
    rows = await request.app.state.store.pool.fetch(
        "SELECT run_id, thread_id, assistant_id, status, created_at, updated_at FROM runs"
        f" WHERE {' AND '.join(clauses)} ORDER BY created_at DESC, run_id DESC LIMIT $2",
        *args,
    )
    more = len(rows) > limit
    rows = rows[:limit]
    # Analytics knows how each run ended (RunFinished), what its model calls cost and how
    # `agentbus eval` scored it (the latest score per metric).
    recorded, usage, evaluated = await asyncio.gather(
        _analytics(request, tenant, "recorded_runs", since_hours=24 * 30, limit=1000),
        _analytics(request, tenant, "usage", group_by="run", period="30d", limit=10_000),
        _analytics(request, tenant, "run_evaluations", since_hours=24 * 30, limit=10_000),
    )
    finished = {str(r.get("run_id")): r for r in recorded}
    used = {str(r.get("run")): r for r in usage}
    scores: dict[str, dict[str, Any]] = {}
    for r in evaluated:
        scores.setdefault(str(r.get("run_id")), {})[str(r.get("metric"))] = r.get("score")
    items = []
    for row in rows:
        run_id = row["run_id"]
        done = finished.get(run_id, {})
        cost = used.get(run_id, {})
        created, updated = row["created_at"], row["updated_at"]
        run_status = done.get("status") or row["status"]
        items.append(
            {
                "run_id": run_id,
                "thread_id": row["thread_id"],
                "assistant_id": row["assistant_id"],
                "status": run_status,
                "created_at": created.isoformat(),
                "duration_ms": round((updated - created).total_seconds() * 1000, 1)
                if run_status not in OPEN_RUNS
                else None,
                "question": done.get("question"),
                "trace_id": done.get("trace_id"),
                "tokens": cost.get("total_tokens"),
                "cost_usd": cost.get("cost_usd"),
                "latency_ms_p50": cost.get("latency_ms_p50"),
                "scores": scores.get(run_id, {}),
            }
        )
    last = rows[-1] if rows else None
    return {
        "items": items,
        "next_cursor": encode_cursor(last["created_at"], last["run_id"]) if more and last else None,
    }


def _span_json(span: Span, start_ns: int) -> dict[str, Any]:
    return {
        "span_id": span.span_id,
        "parent_id": span.parent_id,
        "name": span.name,
        "service": span.service,
        "start_ms": round((span.start_ns - start_ns) / 1e6, 3),
        "duration_ms": round(span.duration_ms, 3),
        "status": span.status,
        "status_message": span.status_message,
        "attributes": {k: v for k, v in span.attributes.items() if not isinstance(v, dict)},
    }


def jaeger_url(trace_id: str) -> str | None:
    base = os.environ.get("AGENTBUS_JAEGER_URL", "").rstrip("/")
    if not os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        return None
    return f"{base or 'http://localhost:16686'}/trace/{trace_id}"


@router.get(
    "/runs/{run_id}/trace",
    summary="A run's spans across services, as `agentbus traces --run` reads them",
    responses={404: {"description": "No such run for this tenant, or no spans of it yet"}},
)
async def run_trace(run_id: str, request: Request, principal: Auth) -> dict[str, Any]:
    owner = await request.app.state.store.pool.fetchval(
        "SELECT tenant_id FROM runs WHERE tenant_id = $1 AND run_id = $2",
        principal.tenant_id,
        run_id,
    )
    if owner is None:
        raise HTTPException(404, "Run not found")
    directory = request.app.state.web_traces_dir
    try:
        # Two passes: the lines naming the run give its trace ids, then their whole traces.
        first = await asyncio.to_thread(load_spans, directory, [run_id])
        ids = {sp.trace_id for sp in first if sp.attributes.get("agentbus.run_id") == run_id}
        spans = await asyncio.to_thread(load_spans, directory, sorted(ids)) if ids else first
        traces = find_run(spans, run_id)
    except TraceViewError as exc:
        url = None
        if os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
            url = os.environ.get("AGENTBUS_JAEGER_URL") or "http://localhost:16686"
        return JSONResponse(  # type: ignore[return-value]
            {"detail": str(exc), "jaeger_url": url}, status_code=404
        )
    out = []
    for trace in traces:
        ordered = sorted(trace.spans, key=lambda sp: (sp.start_ns, -sp.end_ns))
        out.append(
            {
                "trace_id": trace.trace_id,
                "duration_ms": round(trace.duration_ms, 3),
                "services": trace.services,
                "orphans": len(trace.orphans),
                "jaeger_url": jaeger_url(trace.trace_id),
                "spans": [_span_json(sp, trace.start_ns) for sp in ordered],
            }
        )
    return {"run_id": run_id, "traces": out}


@router.get(
    "/documents/{document_id}/file",
    summary="The document's stored bytes (open a PDF citation at its page with #page=N)",
    responses={404: {"description": "No such document for this tenant"}},
)
async def document_file(document_id: str, request: Request, principal: Auth) -> Response:
    stored = await documents.stored_file(
        request.app.state.store.pool, principal.tenant_id, document_id
    )
    if stored is None:
        raise HTTPException(404, "Document not found")
    sha256, filename, content_type = stored
    js = request.app.state.runs.nc.jetstream()
    try:
        store = await js.object_store(DOCUMENTS.name)
        result = await store.get(f"{principal.tenant_id}/{document_id}/{sha256}")
    except NotFoundError:
        raise HTTPException(404, "Document not found") from None
    quoted = json.dumps(str(filename or "document"))
    return Response(
        result.data or b"",
        media_type=str(content_type or "application/octet-stream"),
        headers={
            "Content-Disposition": f"inline; filename={quoted}",
            "Cache-Control": "private, no-store",
            "X-Content-Type-Options": "nosniff",
        },
    )


# --- the built app -------------------------------------------------------------------------

# Paths that belong to the APIs: an unknown one is a JSON 404, never the app's page.
API_PREFIXES = (
    "/api/",
    "/v1/",
    "/mcp",
    "/a2a",
    "/.well-known/",
    "/threads",
    "/runs",
    "/assistants",
    "/store",
    "/docs",
    "/redoc",
    "/openapi.json",
    "/metrics",
)


def default_web_dir() -> Path:
    """`web/dist` of the repository this package is installed from (editable install)."""
    return Path(__file__).resolve().parents[6] / "web" / "dist"


def mount_web(api: FastAPI, web_dir: Path | None, traces_dir: Path) -> None:
    """Serve the built app at `/`; call after every API router is included.

    Files under the build directory are served as they are (hashed assets cached for a year);
    a browser's page request (Accept: text/html) for any other non-API path gets index.html, so
    a reload on an app URL works; other clients get the usual JSON 404.
    Without a build (`make setup` runs `npm ci && npm run build`), `/` says how to make one.
    """
    api.state.web_traces_dir = traces_dir
    configured = os.environ.get("AGENTBUS_WEB_DIR")
    root = (web_dir or (Path(configured) if configured else default_web_dir())).resolve()

    @api.get("/{path:path}", include_in_schema=False)
    async def web_app(path: str, request: Request) -> Response:
        if ("/" + path).startswith(API_PREFIXES):
            raise HTTPException(404, "Not Found")
        # Only a browser asking for a page gets the app for an unknown path; API clients keep
        # their JSON 404.
        wants_page = path == "" or "text/html" in request.headers.get("accept", "")
        index = root / "index.html"
        if not index.is_file():
            return JSONResponse(
                {"detail": f"The web app is not built ({root}); run `make setup`"},
                status_code=404,
            )
        target = (root / path).resolve()
        if path and target.is_file() and target.is_relative_to(root):
            cache = (
                "public, max-age=31536000, immutable" if path.startswith("assets/") else "no-cache"
            )
            return FileResponse(target, headers={"Cache-Control": cache})
        if path.startswith("assets/") or not wants_page:
            raise HTTPException(404, "Not Found")
        return FileResponse(index, headers={"Cache-Control": "no-cache"})
