"""`GET /api/v1/analytics/{query}`: tenant from credentials, params forwarded, 422/503 shapes.

The route runs in a small FastAPI app with the gateway's error handlers over the session's real
NATS; a stand-in analytics responder on `agentbus.v1.analytics.query` records what it is asked
and answers the way the analytics service does (it is another service, so not imported here).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import nats
import pytest
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from starlette.exceptions import HTTPException as StarletteHTTPException

from agentbus.contracts import AnalyticsQuery, AnalyticsResult
from agentbus.contracts import subjects as s
from agentbus.gateway.api import _http_error, _validation_error
from agentbus.gateway.auth import Principal
from agentbus.gateway.auth.deps import current_principal
from agentbus.gateway.routes.analytics import router
from agentbus.runtime.engines import NatsEngine


@dataclass
class Runs:
    nc: NatsClient


@pytest.fixture
async def client(nats_engine: NatsEngine) -> AsyncIterator[tuple[httpx.AsyncClient, list[Any]]]:
    nc = await nats.connect(nats_engine.url)
    asked: list[AnalyticsQuery] = []

    async def answer(msg: Msg) -> None:
        query = AnalyticsQuery.model_validate_json(msg.data)
        asked.append(query)
        if query.params.get("group_by") == "user":
            error = "invalid params for usage: group_by: Input should be 'model' or 'day'"
            reply = AnalyticsResult(tenant_id=query.tenant_id, name=query.name, error=error)
        elif query.params.get("boom"):
            reply = AnalyticsResult(tenant_id=query.tenant_id, name=query.name, error="disk full")
        else:
            reply = AnalyticsResult(
                tenant_id=query.tenant_id,
                name=query.name,
                columns=["model", "calls"],
                rows=[["m", 3]],
                took_ms=1.5,
            )
        await msg.respond(reply.model_dump_json().encode())

    app = FastAPI()
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.include_router(router)
    app.state.runs = Runs(nc)
    app.dependency_overrides[current_principal] = lambda: Principal(tenant_id="acme", user_id="u")
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as http:
            sub = await nc.subscribe(s.ANALYTICS_QUERY, queue="analytics", cb=answer)
            try:
                yield http, asked
            finally:
                await sub.unsubscribe()
            # Nobody answers any more: 503, not a hang.
            gone = await http.get("/api/v1/analytics/usage")
            assert gone.status_code == 503, gone.text
            assert "not available" in gone.json()["detail"]
    finally:
        await nc.close()


async def test_forwards_params_with_the_callers_tenant(
    client: tuple[httpx.AsyncClient, list[AnalyticsQuery]],
) -> None:
    http, asked = client
    ok = await http.get("/api/v1/analytics/usage", params={"group_by": "model", "since_hours": 24})
    assert ok.status_code == 200, ok.text
    assert ok.json() == {
        "name": "usage",
        "columns": ["model", "calls"],
        "rows": [["m", 3]],
        "took_ms": 1.5,
    }
    assert asked[-1].tenant_id == "acme"
    assert asked[-1].params == {"group_by": "model", "since_hours": "24"}


async def test_bad_input_is_a_422_in_the_gateway_shape(
    client: tuple[httpx.AsyncClient, list[AnalyticsQuery]],
) -> None:
    http, asked = client
    bad = await http.get("/api/v1/analytics/usage", params={"group_by": "user"})
    assert bad.status_code == 422
    assert bad.json() == {
        "detail": "Validation error",
        "errors": [
            {"field": "query.group_by", "message": "Input should be 'model' or 'day'"},
        ],
    }
    unknown = await http.get("/api/v1/analytics/select_star")
    assert unknown.status_code == 422
    assert unknown.json()["errors"][0]["field"] == "path.query"
    spoof = await http.get("/api/v1/analytics/dora", params={"tenant_id": "other"})
    assert spoof.status_code == 422
    assert spoof.json()["errors"][0]["field"] == "query.tenant_id"
    twice = await http.get("/api/v1/analytics/dora?period=1d&period=2d")
    assert twice.status_code == 422
    assert all(q.tenant_id == "acme" for q in asked)
    assert not any("tenant_id" in q.params for q in asked)
    failed = await http.get("/api/v1/analytics/runs", params={"boom": "1"})
    assert failed.status_code == 502
    # A reason code, not the service's own words (issue 13, point 11; they go to the log).
    assert failed.json() == {
        "detail": "Analytics query failed (query_failed)",
        "reason": "query_failed",
    }
