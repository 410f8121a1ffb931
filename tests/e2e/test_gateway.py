"""The gateway's native API over the real platform: auth, threads, SSE chat, resumable streams,
bad input."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import nats
import pytest

from agentbus.runtime.platform import Platform

from .support import register

pytestmark = pytest.mark.e2e


def dev_key(platform: Platform) -> str:
    return (platform.data_dir / "dev-api-key").read_text().strip()


@pytest.fixture
async def http(platform: Platform) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=platform.gateway_url, headers={"x-api-key": dev_key(platform)}, timeout=120
    ) as client:
        yield client


def parse_sse(text: str) -> list[dict[str, Any]]:
    events = []
    for block in text.split("\n\n"):
        fields: dict[str, Any] = {}
        for line in block.splitlines():
            if line.startswith(":"):
                continue
            key, _, value = line.partition(": ")
            fields[key] = fields.get(key, "") + value if key == "data" else value
        if "event" in fields:
            fields["data"] = json.loads(fields.get("data") or "null")
            events.append(fields)
    return events


async def stream(
    http: httpx.AsyncClient, method: str, url: str, **kwargs: Any
) -> tuple[httpx.Response, list[dict[str, Any]]]:
    async with http.stream(method, url, **kwargs) as response:
        body = (await response.aread()).decode()
    return response, parse_sse(body)


async def test_chat_stream_speaks_the_native_sse_contract(http: httpx.AsyncClient) -> None:
    response, events = await stream(
        http, "POST", "/api/v1/chat/stream", json={"message": "who knows Rust?"}
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    names = [e["event"] for e in events]
    assert names[0] == "stream_start" and names[-2:] == ["response", "stream_end"]
    assert {"routing", "tool_start", "tool_end", "token", "model_selection"} <= set(names)
    ids = [int(e["id"]) for e in events if "id" in e]
    assert ids == sorted(ids) and len(ids) == len(set(ids))
    assert events[-1]["data"]["tokens"] > 0
    assert response.headers["content-location"].startswith("/api/v1/runs/")


async def test_messages_sent_together_on_one_thread_run_one_after_another(
    http: httpx.AsyncClient,
) -> None:
    thread = (await http.post("/api/v1/threads", json={"title": "busy"})).json()
    questions = ["Who knows Rust?", "How do we roll back a release?", "Who owns billing?"]
    outcomes = await asyncio.gather(
        *(
            stream(
                http,
                "POST",
                "/api/v1/chat/stream",
                json={"message": q, "thread_id": thread["thread_id"]},
            )
            for q in questions
        )
    )
    for response, events in outcomes:
        assert response.status_code == 200
        assert events[-1]["event"] == "stream_end" and events[-1]["data"]["status"] == "success"
    # Queued behind each other (enqueue), never interleaved: question, answer, question, ...
    listed = await http.get(f"/api/v1/threads/{thread['thread_id']}/messages")
    messages = listed.json()["messages"]
    # Each question is followed by its own final answer before the next question comes in
    # (tool calls and results may sit in between).
    turns: list[list[str]] = []
    for m in messages:
        if m["role"] == "user":
            turns.append([])
        elif m["role"] == "assistant" and m.get("content") and not m.get("tool_calls"):
            turns[-1].append(m["content"])
    assert sorted(m["content"] for m in messages if m["role"] == "user") == sorted(questions)
    assert [len(answers) for answers in turns] == [1, 1, 1], messages


async def test_dropped_stream_resumes_from_last_event_id_with_no_gap_or_repeat(
    http: httpx.AsyncClient,
) -> None:
    words = " ".join(f"word{i}" for i in range(120))
    body = {"message": words, "assistant_id": "echo"}
    seen: list[dict[str, Any]] = []
    async with http.stream("POST", "/api/v1/chat/stream", json=body) as response:
        location = response.headers["content-location"]
        buffer = ""
        async for chunk in response.aiter_text():
            buffer += chunk
            complete, _, buffer = buffer.rpartition("\n\n")
            seen.extend(parse_sse(complete))
            if len([e for e in seen if e["event"] == "token"]) >= 20:
                break  # the client drops mid-answer
    last_id = [e for e in seen if "id" in e][-1]["id"]
    _, rest = await stream(http, "GET", location, headers={"Last-Event-ID": last_id})
    _, whole = await stream(http, "GET", location)
    assert [e for e in seen if "id" in e] + [e for e in rest if "id" in e] == [
        e for e in whole if "id" in e
    ]
    text = "".join(e["data"]["text"] for e in seen + rest if e["event"] == "token")
    assert text.strip() == words


async def test_chat_json_threads_and_messages(http: httpx.AsyncClient) -> None:
    created = await http.post("/api/v1/threads", json={"title": "Rust people"})
    assert created.status_code == 201
    thread_id = created.json()["thread_id"]
    answer = await http.post(
        "/api/v1/chat", json={"message": "hello", "thread_id": thread_id, "assistant_id": "echo"}
    )
    assert answer.status_code == 200 and answer.json()["text"] == "hello"
    listed = (await http.get("/api/v1/threads", params={"limit": 5})).json()["items"]
    assert listed[0]["thread_id"] == thread_id  # newest first
    patched = await http.patch(f"/api/v1/threads/{thread_id}", json={"title": "Renamed"})
    assert patched.json()["title"] == "Renamed"
    messages = (await http.get(f"/api/v1/threads/{thread_id}/messages")).json()["messages"]
    assert [m["content"] for m in messages] == ["hello", "hello"]
    assert (await http.delete(f"/api/v1/threads/{thread_id}")).status_code == 204
    assert (await http.get(f"/api/v1/threads/{thread_id}")).status_code == 404


async def test_auth_and_tenancy(platform: Platform, http: httpx.AsyncClient) -> None:
    async with httpx.AsyncClient(base_url=platform.gateway_url, timeout=30) as anon:
        assert (await anon.get("/api/v1/threads")).status_code == 401
        bad = await anon.get("/api/v1/threads", headers={"Authorization": "Bearer nope"})
        assert bad.status_code == 401 and bad.json()["detail"]
        reg = await register(
            anon,
            {
                "email": "ann@example.com",
                "password": "Sup3r-secret!",
                "tenant_name": "Other Co",
            },
        )
        assert reg.status_code == 201, reg.text
        login = await anon.post(
            "/api/v1/auth/login", data={"username": "ann@example.com", "password": "Sup3r-secret!"}
        )
        token = login.json()["access_token"]
        mine = (await http.post("/api/v1/threads", json={})).json()["thread_id"]
        other = await anon.get(
            f"/api/v1/threads/{mine}", headers={"Authorization": f"Bearer {token}"}
        )
        assert other.status_code == 404


async def test_bad_input_is_refused_and_nothing_reaches_the_bus(
    platform: Platform, http: httpx.AsyncClient
) -> None:
    nc = await nats.connect(platform.engines.urls()["nats"])
    js = nc.jetstream()
    before = (await js.stream_info("RUNS")).state.last_seq
    cases = [
        (dict(content=b"{not json", headers={"content-type": "application/json"}), 422),
        (dict(json={"message": "hi", "sql": "DROP"}), 422),
        (dict(json={"message": ""}), 422),
        (dict(content=b"message=hi", headers={"content-type": "text/plain"}), 415),
        (
            dict(
                content=b'{"message": "' + b"x" * 2_000_000 + b'"}',
                headers={"content-type": "application/json"},
            ),
            413,
        ),
        (
            dict(content=b'{"message": "caf\xe9"}', headers={"content-type": "application/json"}),
            400,
        ),
    ]
    for kwargs, status in cases:
        response = await http.post("/api/v1/chat", **kwargs)
        assert response.status_code == status, (kwargs.get("headers"), response.text)
        body = response.json()
        assert "detail" in body
        if status == 422:
            assert body["detail"] == "Validation error" and body["errors"][0]["message"]
    assert (await js.stream_info("RUNS")).state.last_seq == before
    await nc.close()


def test_cli_ask_streams_through_the_gateway(platform: Platform) -> None:
    import os
    import subprocess
    import sys

    env = {**os.environ, "AGENTBUS_DATA_DIR": str(platform.data_dir)}
    cli = [sys.executable, "-m", "agentbus.runtime.cli"]
    plain = subprocess.run(
        [*cli, "ask", "who knows Rust?"], env=env, capture_output=True, text=True, timeout=120
    )
    assert plain.returncode == 0, plain.stderr
    assert plain.stdout.strip()
    as_json = subprocess.run(
        [*cli, "ask", "who knows Rust?", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    events = [json.loads(line) for line in as_json.stdout.splitlines()]
    assert events[0]["event"] == "stream_start" and events[-1]["event"] == "stream_end"


async def test_upload_a_pdf_follow_its_progress_then_ask_about_it(
    http: httpx.AsyncClient,
) -> None:
    from .knowledge import pdf_bytes

    pdf = pdf_bytes(
        [
            "Office plants. The ficus in the lobby is watered on Tuesdays.",
            "Parking. Visitors park on level minus two and register at the front desk.",
        ]
    )
    response = await http.post(
        "/api/v1/documents",
        files={"file": ("facilities.pdf", pdf, "application/pdf")},
        data={"title": "Facilities handbook"},
    )
    assert response.status_code == 202, response.text
    doc = response.json()
    _, events = await stream(http, "GET", doc["events"])
    names = [e["event"] for e in events]
    assert names[-1] == "indexed" and "progress" in names
    assert events[-1]["data"]["pages"] == 2
    # Resume the progress stream after its first event: the rest, nothing twice.
    _, rest = await stream(http, "GET", doc["events"], headers={"Last-Event-ID": events[0]["id"]})
    assert [e["id"] for e in rest] == [e["id"] for e in events[1:]]
    status = await http.get(f"/api/v1/documents/{doc['document_id']}")
    assert status.json()["status"] == "indexed"
    answer = await http.post("/api/v1/chat", json={"message": "Where do visitors park?"})
    body = answer.json()
    assert "level minus two" in body["text"]
    assert any(c["document_id"] == doc["document_id"] and c["page"] == 2 for c in body["citations"])

    # Delete removes it from search, the graph and the listing; a second delete is a 404.
    assert (await http.delete(f"/api/v1/documents/{doc['document_id']}")).status_code == 204
    assert (await http.get(f"/api/v1/documents/{doc['document_id']}")).status_code == 404
    listed = (await http.get("/api/v1/documents", params={"limit": 100})).json()["items"]
    assert doc["document_id"] not in {d["document_id"] for d in listed}
    again = await http.post("/api/v1/chat", json={"message": "Where do visitors park?"})
    assert all(c["document_id"] != doc["document_id"] for c in again.json()["citations"])
    assert (await http.delete(f"/api/v1/documents/{doc['document_id']}")).status_code == 404


async def test_uploads_are_checked(http: httpx.AsyncClient) -> None:
    png = await http.post("/api/v1/documents", files={"file": ("x.png", b"\x89PNG", "image/png")})
    assert png.status_code == 415
    empty = await http.post("/api/v1/documents", files={"file": ("e.txt", b"", "text/plain")})
    assert empty.status_code == 400
    other = await http.get("/api/v1/documents/doesnotexist")
    assert other.status_code == 404
    assert (await http.delete("/api/v1/documents/doesnotexist")).status_code == 404
    assert (await http.delete("/api/v1/documents/not.a.token")).status_code == 404


async def test_rate_limit_answers_429_with_retry_after(platform: Platform) -> None:
    async with httpx.AsyncClient(base_url=platform.gateway_url, timeout=30) as anon:
        statuses = []
        for i in range(6):
            response = await anon.post(
                "/api/v1/auth/register", json={"email": f"r{i}@example.com", "password": "weak"}
            )
            statuses.append(response.status_code)
            if response.status_code == 429:
                assert int(response.headers["Retry-After"]) >= 1
                assert "Too many register requests" in response.json()["detail"]
        assert 429 in statuses and statuses[0] != 429
