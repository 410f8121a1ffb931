"""The web app's routes: recent runs (tenant's own, joined with analytics), a run's trace from
the span files, a document's bytes from the object store, and the built app at `/` with its
fallback. Real NATS (object store, a stand-in analytics responder: another service) and the
session's real PostgreSQL; the built app is a tiny directory written by the test."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import nats
import pytest
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from starlette.exceptions import HTTPException as StarletteHTTPException

from agentbus.contracts import AnalyticsQuery, AnalyticsResult, RunEvent
from agentbus.contracts import subjects as s
from agentbus.contracts.streams import DOCUMENTS
from agentbus.gateway.api import _http_error, _validation_error
from agentbus.gateway.auth import Principal
from agentbus.gateway.auth.deps import current_principal
from agentbus.gateway.langgraph.encode import Encoder
from agentbus.gateway.routes.web import jaeger_url, mount_web, router
from agentbus.gateway.store import GatewayStore
from agentbus.runtime.engines import NatsEngine, PostgresEngine
from agentbus.runtime.provisioning import ensure_bucket
from agentbus.runtime.stores.chunks import schema_sql


@dataclass
class Runs:
    nc: NatsClient

    @property
    def js(self) -> JetStreamContext:
        # GET /runs settles a running row from its last event in RUN_EVENTS (none here).
        return self.nc.jetstream()


@dataclass
class Env:
    http: httpx.AsyncClient
    tenant: str
    pool: asyncpg.Pool
    nc: NatsClient
    traces: Path
    web: Path


def otlp_line(trace_id: str, service: str, spans: list[dict[str, Any]]) -> str:
    return json.dumps(
        {
            "resourceSpans": [
                {
                    "resource": {
                        "attributes": [
                            {"key": "service.name", "value": {"stringValue": f"agentbus-{service}"}}
                        ]
                    },
                    "scopeSpans": [{"spans": [{"traceId": trace_id, **sp} for sp in spans]}],
                }
            ]
        }
    )


@pytest.fixture
async def env(
    nats_engine: NatsEngine, postgres_engine: PostgresEngine, tmp_path: Path
) -> AsyncIterator[Env]:
    nc = await nats.connect(nats_engine.url)
    pool = await asyncpg.create_pool(postgres_engine.url, min_size=1, max_size=4)
    assert pool is not None
    store = GatewayStore(pool)
    await store.ensure_schema()
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(727003)")
        await conn.execute(schema_sql(384))
    tenant = f"web-{uuid.uuid4().hex[:8]}"

    async def answer(msg: Msg) -> None:
        query = AnalyticsQuery.model_validate_json(msg.data)
        if query.tenant_id != tenant:
            return  # another test's tenant: not ours to answer
        if query.name == "recorded_runs":
            cols = ["run_id", "trace_id", "status", "question"]
            rows: list[list[Any]] = [["r-done", "a" * 32, "success", "What is X?"]]
        elif query.name == "run_evaluations":
            cols = ["run_id", "metric", "score", "judge", "evaluations", "scored_at"]
            rows = [
                ["r-done", "relevancy", 0.75, "heuristic", 2, "2026-01-01T00:00:00Z"],
                ["r-done", "faithfulness", 1.0, "heuristic", 1, "2026-01-01T00:00:00Z"],
            ]
        else:
            cols = ["run", "total_tokens", "cost_usd", "latency_ms_p50"]
            rows = [["r-done", 120, 0.002, 30.0]]
        reply = AnalyticsResult(tenant_id=tenant, name=query.name, columns=cols, rows=rows)
        await msg.respond(reply.model_dump_json().encode())

    sub = await nc.subscribe(s.ANALYTICS_QUERY, queue="web-test", cb=answer)
    web = tmp_path / "dist"
    (web / "assets").mkdir(parents=True)
    (web / "index.html").write_text("<!doctype html><title>Agentbus</title>")
    (web / "assets" / "app-1.js").write_text("console.log(1)")
    app = FastAPI()
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.include_router(router)

    @app.get("/threads/{thread_id}")
    async def an_api_route(thread_id: str) -> dict[str, str]:
        return {"thread_id": thread_id}

    mount_web(app, web, tmp_path / "traces")
    app.state.runs = Runs(nc)
    app.state.store = store
    app.dependency_overrides[current_principal] = lambda: Principal(tenant_id=tenant, user_id="u")
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as http:
            yield Env(http, tenant, pool, nc, tmp_path / "traces", web)
    finally:
        await sub.unsubscribe()
        await pool.execute("DELETE FROM runs WHERE tenant_id = $1", tenant)
        await pool.execute("DELETE FROM documents WHERE tenant_id = $1", tenant)
        await pool.close()
        await nc.close()


async def add_run(env: Env, run_id: str, status: str, tenant: str | None = None) -> None:
    created = datetime.now(UTC) - timedelta(seconds=2)
    await env.pool.execute(
        "INSERT INTO runs (tenant_id, run_id, thread_id, assistant_id, status, created_at,"
        " updated_at) VALUES ($1, $2, 'th', 'agent', $3, $4, $5)",
        tenant or env.tenant,
        run_id,
        status,
        created,
        created + timedelta(milliseconds=1500),
    )


async def test_recent_runs_are_the_tenants_with_analytics_joined(env: Env) -> None:
    await add_run(env, "r-done", "pending")  # the gateway row lags; analytics knows the end
    await add_run(env, "r-live", "running")
    await add_run(env, "r-other", "success", tenant=f"{env.tenant}-other")
    try:
        resp = await env.http.get("/api/v1/runs")
        assert resp.status_code == 200, resp.text
        items = {r["run_id"]: r for r in resp.json()["items"]}
        assert set(items) == {"r-done", "r-live"}
        done = items["r-done"]
        assert done["status"] == "success"
        assert done["tokens"] == 120 and done["cost_usd"] == 0.002
        assert done["trace_id"] == "a" * 32 and done["question"] == "What is X?"
        assert done["duration_ms"] == 1500.0
        assert done["scores"] == {"relevancy": 0.75, "faithfulness": 1.0}
        assert items["r-live"]["duration_ms"] is None and items["r-live"]["tokens"] is None
        assert items["r-live"]["scores"] == {}
        bad = await env.http.get("/api/v1/runs", params={"limit": 0})
        assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "query.limit"
    finally:
        await env.pool.execute("DELETE FROM runs WHERE tenant_id = $1", f"{env.tenant}-other")


async def test_run_trace_reads_the_span_files(env: Env) -> None:
    await add_run(env, "r-traced", "success")
    await add_run(env, "r-theirs", "success", tenant=f"{env.tenant}-other")
    trace = "b" * 32
    env.traces.mkdir()
    t0 = 1_700_000_000_000_000_000
    (env.traces / "gateway.jsonl").write_text(
        otlp_line(
            trace,
            "gateway",
            [
                {
                    "spanId": "1" * 16,
                    "name": "POST /threads/{thread_id}/runs/stream",
                    "kind": 2,
                    "startTimeUnixNano": str(t0),
                    "endTimeUnixNano": str(t0 + 50_000_000),
                    "attributes": [
                        {"key": "agentbus.run_id", "value": {"stringValue": "r-traced"}}
                    ],
                }
            ],
        )
        + "\n"
        + otlp_line("c" * 32, "gateway", [{"spanId": "3" * 16, "name": "unrelated"}])
        + "\n"
    )
    (env.traces / "orchestrator.jsonl").write_text(
        otlp_line(
            trace,
            "orchestrator",
            [
                {
                    "spanId": "2" * 16,
                    "parentSpanId": "1" * 16,
                    "name": "run agent",
                    "kind": 5,
                    "startTimeUnixNano": str(t0 + 5_000_000),
                    "endTimeUnixNano": str(t0 + 45_000_000),
                    "status": {"code": 2, "message": "boom"},
                }
            ],
        )
        + "\n{not json"  # a line being written right now
    )
    resp = await env.http.get("/api/v1/runs/r-traced/trace")
    assert resp.status_code == 200, resp.text
    [found] = resp.json()["traces"]
    assert found["trace_id"] == trace and found["services"] == ["gateway", "orchestrator"]
    assert found["duration_ms"] == 50.0 and found["jaeger_url"] is None
    root, child = found["spans"]
    assert root["name"].startswith("POST") and root["start_ms"] == 0
    assert child["parent_id"] == "1" * 16 and child["start_ms"] == 5.0
    assert child["duration_ms"] == 40.0 and child["status"] == "error"
    # Another tenant's run, an unknown run, a run without spans: 404 with a JSON detail.
    for run in ("r-theirs", "nope"):
        other = await env.http.get(f"/api/v1/runs/{run}/trace")
        assert other.status_code == 404 and other.json()["detail"] == "Run not found"
    await add_run(env, "r-quiet", "success")
    quiet = await env.http.get("/api/v1/runs/r-quiet/trace")
    assert quiet.status_code == 404 and "no span of run" in quiet.json()["detail"]
    await env.pool.execute("DELETE FROM runs WHERE tenant_id = $1", f"{env.tenant}-other")


async def test_document_file_comes_from_the_object_store(env: Env) -> None:
    data = b"%PDF-1.4 not really"
    sha = "d" * 64
    await ensure_bucket(env.nc.jetstream(), DOCUMENTS)
    store = await env.nc.jetstream().object_store(DOCUMENTS.name)
    await store.put(f"{env.tenant}/doc1/{sha}", data)
    await env.pool.execute(
        "INSERT INTO documents (tenant_id, document_id, sha256, fingerprint, status, filename,"
        " content_type)"
        " VALUES ($1, 'doc1', $2, 'f', 'indexed', 'a \"b\".pdf', 'application/pdf')",
        env.tenant,
        sha,
    )
    resp = await env.http.get("/api/v1/documents/doc1/file")
    assert resp.status_code == 200 and resp.content == data
    assert resp.headers["content-type"] == "application/pdf"
    assert resp.headers["content-disposition"] == 'inline; filename="a \\"b\\".pdf"'
    missing = await env.http.get("/api/v1/documents/doc2/file")
    assert missing.status_code == 404 and missing.json()["detail"] == "Document not found"


async def test_the_app_is_served_with_a_fallback_but_api_paths_stay_json(env: Env) -> None:
    index = await env.http.get("/")
    assert index.status_code == 200 and "<title>Agentbus</title>" in index.text
    assert index.headers["cache-control"] == "no-cache"
    page = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}  # what a browser sends
    deep = await env.http.get("/chat/some-thread", headers=page)
    assert deep.status_code == 200 and deep.text == index.text
    # An API client asking for an unknown path keeps its JSON 404.
    assert (await env.http.get("/chat/some-thread")).json() == {"detail": "Not Found"}
    asset = await env.http.get("/assets/app-1.js")
    assert asset.status_code == 200 and "immutable" in asset.headers["cache-control"]
    # A path out of the build directory gets the page, never the file.
    (env.web.parent / "secret.txt").write_text("secret")
    escaped = await env.http.get("/..%2Fsecret.txt", headers=page)
    assert escaped.status_code == 200 and escaped.text == index.text
    for path in ("/assets/missing.js", "/api/v1/nothing", "/runs/x/y", "/metrics"):
        gone = await env.http.get(path, headers=page)
        assert gone.status_code == 404, path
        assert gone.headers["content-type"] == "application/json", path
    # Routes included before the fallback still answer.
    assert (await env.http.get("/threads/t1")).json() == {"thread_id": "t1"}
    (env.web / "index.html").unlink()
    unbuilt = await env.http.get("/")
    assert unbuilt.status_code == 404 and "make setup" in unbuilt.json()["detail"]


def test_platform_steps_stream_as_named_custom_events() -> None:
    """The LangGraph `events` mode carries routing, model selection and citations (the web
    app's status bar, routing badge and sources read them); other modes do not."""
    enc = Encoder(frozenset({"events"}), "r1", "th", "agent")
    parts = []
    for seq, (kind, data) in enumerate(
        [
            ("model_selection", {"group": "fast", "model": "local/x"}),
            ("routing", {"specialists": ["documents"], "tools": ["search_documents"]}),
            ("citations", {"citations": [{"document_id": "d", "page": 2}]}),
        ]
    ):
        event = RunEvent.model_validate(
            {"tenant_id": "t", "run_id": "r1", "thread_id": "th", "seq": seq, "type": kind}
            | {"data": data}
        )
        parts.extend(enc.parts(event))
    assert [(p[0], p[1]["event"], p[1]["name"]) for p in parts] == [
        ("events", "on_custom_event", "model_selection"),
        ("events", "on_custom_event", "routing"),
        ("events", "on_custom_event", "citations"),
    ]
    assert parts[0][1]["data"]["model"] == "local/x"
    values_only = Encoder(frozenset({"values"}), "r1", "th", "agent")
    routing = RunEvent(tenant_id="t", run_id="r1", thread_id="th", seq=0, type="routing")
    assert values_only.parts(routing) == []


def test_the_jaeger_link_only_when_spans_go_to_a_collector(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    assert jaeger_url("ab" * 16) is None
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317")
    assert jaeger_url("ab" * 16) == f"http://localhost:16686/trace/{'ab' * 16}"
    monkeypatch.setenv("AGENTBUS_JAEGER_URL", "https://jaeger.example.com/")
    assert jaeger_url("cd" * 16) == f"https://jaeger.example.com/trace/{'cd' * 16}"
