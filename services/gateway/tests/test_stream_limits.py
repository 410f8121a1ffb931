"""Streams and document ids a tenant cannot abuse (issue 13, points 4 and 8): open SSE streams
are capped per tenant (429 with Retry-After), the progress stream is rate-limited and answers
404 for an id that is not the tenant's (the same as for one that does not exist), and document
ids reveal nothing about the file name."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import nats
import pytest

from agentbus.gateway.app import build
from agentbus.gateway.settings import GatewaySettings
from agentbus.runtime.testing import RAISED_RATE_LIMITS, running

PASSWORD = "Correct-Horse-9"


@pytest.fixture
async def gateway(
    service_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[httpx.AsyncClient, dict[str, str]]]:
    monkeypatch.setenv("AGENTBUS_MAX_STREAMS_PER_TENANT", "2")
    monkeypatch.setenv(
        "AGENTBUS_RATE_LIMITS",
        json.dumps({**RAISED_RATE_LIMITS, "stream": "4/minute", "list": "3/minute"}),
    )
    settings = GatewaySettings()
    service = build(settings)
    base = f"http://127.0.0.1:{settings.gateway_port}"
    async with running(service), httpx.AsyncClient(base_url=base, timeout=30) as http:
        key = (Path(service_env["AGENTBUS_DATA_DIR"]) / "dev-api-key").read_text().strip()
        yield http, {"x-api-key": key}
    # No orchestrator ran: later tests in this session must not find these runs queued.
    nc = await nats.connect(service_env["AGENTBUS_NATS_URL"])
    await nc.jetstream().purge_stream("RUNS")
    await nc.close()


async def other_tenant(http: httpx.AsyncClient) -> dict[str, str]:
    email = f"other-{uuid.uuid4().hex[:10]}@example.com"
    body = {"email": email, "password": PASSWORD}
    assert (await http.post("/api/v1/auth/register", json=body)).status_code == 201
    tokens = (await http.post("/api/v1/auth/login", json=body)).json()
    return {"Authorization": f"Bearer {tokens['access_token']}"}


async def test_open_streams_are_capped_per_tenant(
    gateway: tuple[httpx.AsyncClient, dict[str, str]],
) -> None:
    http, _ = gateway
    # A fresh tenant: the rate-limit windows live in NATS KV for the whole session, so the dev
    # tenant's may already hold other tests' hits in this minute (4/minute here).
    headers = await other_tenant(http)
    chat = {"message": "hold this stream open"}
    async with (
        http.stream("POST", "/api/v1/chat/stream", json=chat, headers=headers) as first,
        http.stream("POST", "/api/v1/chat/stream", json=chat, headers=headers) as second,
    ):
        assert first.status_code == second.status_code == 200
        third = await http.post("/api/v1/chat/stream", json=chat, headers=headers)
        assert third.status_code == 429, third.text
        assert int(third.headers["Retry-After"]) >= 1
        assert "streams" in third.json()["detail"]
        # Another tenant is not affected by this one's streams.
        other = await other_tenant(http)
        async with http.stream("POST", "/api/v1/chat/stream", json=chat, headers=other) as theirs:
            assert theirs.status_code == 200
    # Closed streams give their places back.
    async with http.stream("POST", "/api/v1/chat/stream", json=chat, headers=headers) as again:
        assert again.status_code == 200


async def test_progress_of_a_document_that_is_not_yours_is_404_and_rate_limited(
    gateway: tuple[httpx.AsyncClient, dict[str, str]],
) -> None:
    http, _ = gateway
    headers = await other_tenant(http)  # fresh tenants: their own rate-limit windows
    files = {"file": ("q3-layoffs.txt", b"Quarterly plan.", "text/plain")}
    uploaded = await http.post("/api/v1/documents", files=files, headers=headers)
    assert uploaded.status_code == 202, uploaded.text
    doc = uploaded.json()["document_id"]
    # The owner follows it at once (queued, nothing indexed yet): a stream, not a 404.
    async with http.stream("GET", f"/api/v1/documents/{doc}/events", headers=headers) as mine:
        assert mine.status_code == 200
    # Unknown, and another tenant's: the same 404, not an endless heartbeat stream.
    other = await other_tenant(http)
    unknown = await http.get(f"/api/v1/documents/{uuid.uuid4().hex[:24]}/events", headers=other)
    theirs = await http.get(f"/api/v1/documents/{doc}/events", headers=other)
    assert unknown.status_code == theirs.status_code == 404
    assert unknown.json() == theirs.json()
    # `stream` allows 4 a minute here: two were used above; the next two pass, then 429.
    codes = [
        (await http.get(f"/api/v1/documents/{doc}x/events", headers=other)).status_code
        for _ in range(3)
    ]
    assert codes[-1] == 429, codes


async def test_document_ids_reveal_nothing_about_the_file_name(
    gateway: tuple[httpx.AsyncClient, dict[str, str]],
) -> None:
    http, headers = gateway
    me = (await http.get("/api/v1/users/me", headers=headers)).json()
    tenant = me["tenant"]["id"]
    files = {"file": ("q3-layoffs.pdf.txt", b"Plans.", "text/plain")}
    doc = (await http.post("/api/v1/documents", files=files, headers=headers)).json()
    guessable = hashlib.sha256(f"{tenant}\x00upload:q3-layoffs.pdf.txt".encode()).hexdigest()
    assert doc["document_id"] != guessable[:24]
    # Re-uploading the same name still replaces the same document.
    again = (await http.post("/api/v1/documents", files=files, headers=headers)).json()
    assert again["document_id"] == doc["document_id"]


async def test_langgraph_joins_and_lists_are_rate_limited_and_lists_capped(
    gateway: tuple[httpx.AsyncClient, dict[str, str]],
) -> None:
    http, _ = gateway
    headers = await other_tenant(http)
    thread = (await http.post("/threads", json={}, headers=headers)).json()["thread_id"]
    too_many = await http.get(f"/threads/{thread}/runs", params={"limit": 1000}, headers=headers)
    assert too_many.status_code == 422, too_many.text
    search = await http.post("/threads/search", json={"limit": 1000}, headers=headers)
    assert search.status_code == 422, search.text
    # `list` allows 3 a minute here, the two refused requests above included.
    codes = [
        (await http.post("/threads/search", json={"limit": 5}, headers=headers)).status_code
        for _ in range(2)
    ]
    assert codes == [200, 429], codes
    # `stream` allows 4: joins of a run that does not exist are 404 until the limit.
    joins = [
        (await http.get(f"/threads/{thread}/runs/{uuid.uuid4()}/join", headers=headers)).status_code
        for _ in range(5)
    ]
    assert joins == [404, 404, 404, 404, 429], joins


async def test_langgraph_streams_past_the_tenants_cap_are_429_before_they_start(
    gateway: tuple[httpx.AsyncClient, dict[str, str]],
) -> None:
    """A LangGraph join or stream follows its run from inside the response: past the tenant's
    cap it must be a 429 JSON answer, not a 200 whose stream then breaks (issue 13, point 4)."""
    http, _ = gateway
    headers = await other_tenant(http)
    thread = (await http.post("/threads", json={}, headers=headers)).json()["thread_id"]
    run = uuid.uuid4()
    chat = {"message": "hold this stream open"}
    async with (
        http.stream("POST", "/api/v1/chat/stream", json=chat, headers=headers) as first,
        http.stream("POST", "/api/v1/chat/stream", json=chat, headers=headers) as second,
    ):
        assert first.status_code == second.status_code == 200  # the cap (2) is reached
        refused = [
            await http.get(f"/threads/{thread}/runs/{run}/join", headers=headers),
            await http.get(f"/threads/{thread}/runs/{run}/stream", headers=headers),
            await http.get(f"/threads/{thread}/stream", headers=headers),
        ]
        for response in refused:
            assert response.status_code == 429, response.text
            assert response.headers["content-type"].startswith("application/json")
            assert "streams" in response.json()["detail"]
            assert int(response.headers["Retry-After"]) >= 1
    # Places given back: the same join is an ordinary answer again (no such run here).
    after = await http.get(f"/threads/{thread}/runs/{run}/join", headers=headers)
    assert after.status_code == 404, after.text
