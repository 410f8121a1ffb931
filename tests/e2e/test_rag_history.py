"""Query history over HTTP (issue 17, RAG application): every question with its answer,
citations, latency and the settings used; paged, per asker, and invisible to other tenants; the
questions of runs made through the LangGraph API (with the official `langgraph_sdk`) too."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest
from langgraph_sdk import get_client

from agentbus.contracts import new_id
from agentbus.contracts.evaluations import FAILURES
from agentbus.runtime.platform import Platform

from .rag_support import Tenant, new_tenant

pytestmark = pytest.mark.e2e


@pytest.fixture
async def owner(platform: Platform) -> AsyncIterator[Tenant]:
    pool = await asyncpg.create_pool(platform.engines.urls()["postgres"], min_size=1, max_size=2)
    assert pool is not None
    yield await new_tenant(platform, pool)
    await pool.close()


async def indexed(client: httpx.AsyncClient, document_id: str) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        status = (await client.get(f"/api/v1/documents/{document_id}")).json().get("status")
        if status in ("indexed", "failed"):
            assert status == "indexed"
            return
        await asyncio.sleep(0.2)
    raise AssertionError("not indexed")


async def test_history_pages_answers_and_isolation(owner: Tenant, http: httpx.AsyncClient) -> None:
    asker, other_key = await owner.client(), await owner.client(scopes=())
    try:
        upload = await asker.post(
            "/api/v1/documents",
            files={
                "file": (
                    "parking.txt",
                    b"Visitors park on level minus two and register at the front desk.",
                    "text/plain",
                )
            },
        )
        doc_id = upload.json()["document_id"]
        await indexed(asker, doc_id)

        first = await asker.post("/api/v1/chat", json={"message": "Where do visitors park?"})
        assert first.status_code == 200, first.text
        changed = await asker.put("/api/v1/settings/pipeline", json={"retrieval": {"top_k": 2}})
        assert changed.status_code == 200, changed.text
        second = await asker.post("/api/v1/chat", json={"message": "Where do visitors register?"})
        assert second.status_code == 200, second.text

        page = (await asker.get("/api/v1/history", params={"limit": 1})).json()
        assert len(page["items"]) == 1 and page["next_cursor"]
        newest: dict[str, Any] = page["items"][0]
        assert newest["id"] == second.json()["run_id"]
        assert newest["question"] == "Where do visitors register?"
        assert newest["answer"] == second.json()["text"] and newest["status"] == "success"
        assert newest["latency_ms"] > 0 and newest["finished_at"]
        assert newest["settings"]["retrieval"]["top_k"] == 2
        assert newest["settings"]["revision"] == 1

        rest = (
            await asker.get("/api/v1/history", params={"limit": 1, "cursor": page["next_cursor"]})
        ).json()
        assert [e["id"] for e in rest["items"]] == [first.json()["run_id"]]
        assert rest["next_cursor"] is None
        older = rest["items"][0]
        assert older["settings"]["revision"] == 0 and older["settings"]["retrieval"]["top_k"] == 5
        assert any(c["document_id"] == doc_id for c in older["citations"]), older
        assert "level minus two" in older["answer"]

        one = await asker.get(f"/api/v1/history/{older['id']}")
        assert one.status_code == 200 and one.json() == older

        # Bad input: a cursor this API never gave, limits out of range.
        for params in ({"cursor": "not-a-cursor"}, {"limit": 0}, {"limit": 101}):
            bad = await asker.get("/api/v1/history", params=params)
            assert bad.status_code == 422, (params, bad.text)

        # Another key of the tenant, and another tenant, see none of it.
        assert (await other_key.get("/api/v1/history")).json()["items"] == []
        assert (await other_key.get(f"/api/v1/history/{older['id']}")).status_code == 404
        assert (await http.get(f"/api/v1/history/{older['id']}")).status_code == 404
        dev_ids = {e["id"] for e in (await http.get("/api/v1/history")).json()["items"]}
        assert older["id"] not in dev_ids and newest["id"] not in dev_ids

        await runs_and_evaluation(owner, asker, other_key, http, [newest["id"], older["id"]])
    finally:
        await asker.aclose()
        await other_key.aclose()


async def runs_and_evaluation(
    owner: Tenant,
    admin: httpx.AsyncClient,
    member: httpx.AsyncClient,
    http: httpx.AsyncClient,
    run_ids: list[str],
) -> None:
    """Run history (paged, with status, duration, tokens, cost) and an evaluation over HTTP."""
    # Analytics records runs and usage asynchronously: wait until both runs carry them.
    deadline = time.monotonic() + 60
    items: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        items = (await admin.get("/api/v1/runs")).json()["items"]
        if all(i["tokens"] is not None and i["question"] for i in items) and len(items) == 2:
            break
        await asyncio.sleep(0.3)
    assert [i["run_id"] for i in items] == run_ids, items
    for item in items:
        assert item["status"] == "success" and item["duration_ms"] > 0
        assert item["tokens"] > 0 and item["cost_usd"] is not None

    first = (await admin.get("/api/v1/runs", params={"limit": 1})).json()
    assert [i["run_id"] for i in first["items"]] == run_ids[:1] and first["next_cursor"]
    rest = (
        await admin.get("/api/v1/runs", params={"limit": 1, "cursor": first["next_cursor"]})
    ).json()
    assert [i["run_id"] for i in rest["items"]] == run_ids[1:] and rest["next_cursor"] is None
    ok = (await admin.get("/api/v1/runs", params={"status": "success"})).json()["items"]
    assert len(ok) == 2
    assert (await admin.get("/api/v1/runs", params={"status": "error"})).json()["items"] == []
    for params in ({"status": "finished"}, {"cursor": "x"}, {"limit": 0}):
        bad = await admin.get("/api/v1/runs", params=params)
        assert bad.status_code == 422, (params, bad.text)
    dev_runs = {i["run_id"] for i in (await http.get("/api/v1/runs")).json()["items"]}
    assert not dev_runs & set(run_ids)

    # An evaluation of those runs, triggered over HTTP, read back when done.
    assert (await member.post("/api/v1/evaluations", json={})).status_code == 403
    for body in ({"metrics": ["no-such-metric"]}, {"since_hours": 0}, {"limit": 0}, {"x": 1}):
        bad = await admin.post("/api/v1/evaluations", json=body)
        assert bad.status_code == 422, (body, bad.text)
    # One evaluation at a time per tenant: a running one (here a stand-in row) refuses another.
    await owner.store.pool.execute(
        "INSERT INTO evaluation_jobs (tenant_id, evaluation_id, params) VALUES ($1, 'busy', '{}')",
        owner.id,
    )
    assert (await admin.post("/api/v1/evaluations", json={})).status_code == 409
    await owner.store.pool.execute(
        "DELETE FROM evaluation_jobs WHERE tenant_id = $1 AND evaluation_id = 'busy'", owner.id
    )
    # One whose worker died and whose deadline passed without an outcome is failed with the
    # fixed sentence when asked about (and no longer blocks a new one).
    await owner.store.pool.execute(
        "INSERT INTO evaluation_jobs (tenant_id, evaluation_id, params, deadline)"
        " VALUES ($1, 'lost', '{}', now() - interval '1 hour')",
        owner.id,
    )
    lost = (await admin.get("/api/v1/evaluations/lost")).json()
    assert (lost["status"], lost["error"]) == ("failed", FAILURES["worker_lost"]), lost
    assert lost["finished_at"] and lost["report"] is None
    started = await admin.post("/api/v1/evaluations", json={"since_hours": 1})
    assert started.status_code == 202, started.text
    url = f"/api/v1/evaluations/{started.json()['evaluation_id']}"
    deadline = time.monotonic() + 120
    evaluation: dict[str, Any] = {}
    while time.monotonic() < deadline:
        evaluation = (await admin.get(url)).json()
        if evaluation["status"] != "running":
            break
        await asyncio.sleep(0.3)
    assert evaluation["status"] == "done", evaluation
    assert evaluation["error"] is None and evaluation["progress"] is None
    report = evaluation["report"]
    assert sorted(r["run_id"] for r in report["runs"]) == sorted(run_ids)
    assert report["metrics"] and all(m["runs"] == 2 for m in report["metrics"])
    assert (await http.get(url)).status_code == 404  # another tenant's evaluation


async def test_langgraph_runs_join_the_history(owner: Tenant) -> None:
    """A run made with `langgraph_sdk` whose input has a user message is a question of the key
    that made it: listed with its answer, citations, status and latency; a run of another input
    (the `steps` diagnostics) is not."""
    _, secret = await owner.store.create_api_key(owner.id, f"sdk-{new_id()[:8]}", ("admin",))
    sdk = get_client(url=owner.base_url, api_key=secret, timeout=120)
    asker = httpx.AsyncClient(base_url=owner.base_url, headers={"x-api-key": secret}, timeout=120)
    other_key = await owner.client()
    try:
        thread = await sdk.threads.create()
        parts = [
            part
            async for part in sdk.runs.stream(
                thread["thread_id"],
                "agent",
                input={"messages": [{"role": "user", "content": "Who knows Rust?"}]},
                stream_mode="values",
            )
        ]
        assert parts[0].event == "metadata" and "error" not in {p.event for p in parts}, parts
        streamed = parts[0].data["run_id"]
        final = [p.data for p in parts if p.event == "values"][-1]
        answer = final["messages"][-1]["content"]
        assert answer

        # A background run on a new thread (stateless), LangChain's message form: completed
        # from its end event when the history is read, as nobody followed it.
        background = await sdk.runs.create(
            None, "agent", input={"messages": [{"type": "human", "content": "Who knows Go?"}]}
        )
        deadline, status = time.monotonic() + 120, "pending"
        while time.monotonic() < deadline:
            status = (await sdk.runs.get(background["thread_id"], background["run_id"]))["status"]
            if status not in ("pending", "running"):
                break
            await asyncio.sleep(0.2)
        assert status == "success", status

        # Not a question: the `steps` diagnostics' input has no messages.
        steps_thread = await sdk.threads.create()
        await sdk.runs.wait(steps_thread["thread_id"], "steps", input={"steps": 1, "delay": 0})
        not_questions = [r["run_id"] for r in await sdk.runs.list(steps_thread["thread_id"])]
        assert len(not_questions) == 1

        page = (await asker.get("/api/v1/history")).json()
        items = page["items"]
        assert [e["id"] for e in items] == [background["run_id"], streamed], items
        newest, entry = items
        assert entry["question"] == "Who knows Rust?" and entry["answer"] == answer
        assert entry["status"] == "success" and entry["latency_ms"] > 0 and entry["finished_at"]
        assert entry["thread_id"] == thread["thread_id"]
        run = await sdk.runs.get(thread["thread_id"], streamed)
        assert entry["assistant_id"] == run["assistant_id"]
        assert isinstance(entry["citations"], list)
        assert entry["settings"]["revision"] == 0
        assert (await asker.get(f"/api/v1/history/{streamed}")).json() == entry
        assert newest["question"] == "Who knows Go?" and newest["status"] == "success"
        assert newest["answer"] and newest["thread_id"] == background["thread_id"]
        for run_id in not_questions:
            assert (await asker.get(f"/api/v1/history/{run_id}")).status_code == 404

        # Only the asker's: another key of the tenant sees none of it.
        assert (await other_key.get("/api/v1/history")).json()["items"] == []
    finally:
        await sdk.aclose()
        await asker.aclose()
        await other_key.aclose()
