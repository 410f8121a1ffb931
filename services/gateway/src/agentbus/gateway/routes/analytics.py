"""Named analytics queries for dashboards: `GET /api/v1/analytics/{query}?param=value`.

The gateway forwards the query string as the query's parameters to the analytics service, with
the tenant of the caller's credentials (a `tenant_id` parameter is refused, never trusted).
Analytics validates the parameters against the named query's model; its verdict comes back as
422 in the gateway's validation error shape, one entry per offending parameter.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import JSONResponse

from agentbus.contracts import AnalyticsQuery, AnalyticsQueryName, AnalyticsResult
from agentbus.contracts import subjects as s

from ..auth.deps import CurrentPrincipal
from ..ratelimit import per_tenant
from ..upstream import UpstreamError, request_reply

router = APIRouter(prefix="/api/v1/analytics", tags=["analytics"])

Auth = CurrentPrincipal
MAX_PARAMS = 20
# Analytics words parameter errors as "invalid params for <query>: <field>: <message>; ...".
_INVALID = re.compile(r"^invalid params for [a-z_]+: (.*)$", re.DOTALL)


def _errors(text: str) -> list[dict[str, str]]:
    match = _INVALID.match(text)
    if match is None:
        return [{"field": "query", "message": text}]
    out = []
    for part in match.group(1).split("; "):
        field, _, message = part.partition(": ")
        out.append({"field": f"query.{field}", "message": message or field})
    return out


def _invalid(errors: list[dict[str, str]]) -> JSONResponse:
    return JSONResponse({"detail": "Validation error", "errors": errors}, status_code=422)


@router.get(
    "/{query}",
    dependencies=[Depends(per_tenant("analytics"))],
    summary="Run a named analytics query (usage, runs, dora, anomalies, ...) for your tenant",
    responses={
        422: {"description": "Unknown query or invalid parameters"},
        503: {"description": "The analytics service is not available"},
    },
)
async def run_query(
    query: Annotated[AnalyticsQueryName, Path(description="The named query")],
    request: Request,
    principal: Auth,
) -> Any:
    items = request.query_params.multi_items()
    if len(items) > MAX_PARAMS:
        return _invalid([{"field": "query", "message": f"at most {MAX_PARAMS} parameters"}])
    params: dict[str, str] = {}
    repeated = [k for k, _ in items if sum(1 for other, _ in items if other == k) > 1]
    if repeated:
        return _invalid(
            [{"field": f"query.{k}", "message": "given more than once"} for k in set(repeated)]
        )
    for key, value in items:
        if key == "tenant_id":
            return _invalid(
                [{"field": "query.tenant_id", "message": "the tenant comes from your credentials"}]
            )
        params[key] = value
    req = AnalyticsQuery(tenant_id=principal.tenant_id, name=query, params=dict(params))
    nc = request.app.state.runs.nc
    result = await request_reply(nc, s.ANALYTICS_QUERY, req, AnalyticsResult, "Analytics query")
    if result.error is not None:
        if _INVALID.match(result.error):
            return _invalid(_errors(result.error))
        raise UpstreamError("Analytics query", "query_failed", result.error)
    return {
        "name": result.name,
        "columns": result.columns,
        "rows": result.rows,
        "took_ms": result.took_ms,
    }
