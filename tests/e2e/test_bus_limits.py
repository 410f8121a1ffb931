"""A JetStream limit reached (issue 21, "Limits reached"): a run the RUNS stream refuses is a
clear 503 with a reason code and Retry-After, on the native API and the LangGraph API alike;
nothing of it is left running or queued, and its thread takes the next run as soon as the stream
accepts again. The refusal is real: RUNS' maximum message size is lowered below any run's size,
as a full stream or a full disk refuses a publish.

The same refusal on INGEST_EVENTS, which ingest publishes to beside its real work, fails no
document: the progress and outcome events wait in ingest's outbox and arrive once it accepts.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
import uuid
from typing import Any

import httpx
import nats
import pytest
from langgraph_sdk.client import LangGraphClient
from langgraph_sdk.errors import APIStatusError

from agentbus.contracts import subjects as s
from agentbus.contracts.streams import INGEST_EVENTS, RUNS
from agentbus.runtime.platform import Platform

pytestmark = pytest.mark.e2e


def refused(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.json()["reason"] == "runs_unavailable", response.text
    assert response.headers["retry-after"] == "5"


async def test_a_refused_run_is_a_503_and_its_thread_takes_the_next_run(
    platform: Platform, http: httpx.AsyncClient, client: LangGraphClient
) -> None:
    native_thread = uuid.uuid4().hex
    created = await http.post("/api/v1/threads", json={"thread_id": native_thread})
    assert created.status_code == 201, created.text
    lg_thread = (await client.threads.create())["thread_id"]
    ask = {"message": "hello", "thread_id": native_thread, "assistant_id": "echo"}
    messages: dict[str, Any] = {"messages": [{"role": "user", "content": "hello"}]}
    nc = await nats.connect(platform.engines.urls()["nats"])
    js = nc.jetstream()
    config = (await js.stream_info(RUNS.name)).config
    await js.update_stream(dataclasses.replace(config, max_msg_size=64))
    try:
        refused(await http.post("/api/v1/chat", json=ask))
        refused(await http.post("/api/v1/chat/stream", json=ask))
        with pytest.raises(APIStatusError) as lg:
            await client.runs.create(lg_thread, "echo", input=messages)
        refused(lg.value.response)
        # The refused runs are over, not pending: nothing will run them later.
        thread = (await http.get(f"/api/v1/threads/{native_thread}")).json()
        assert thread["status"] == "error", thread
        listed = await client.runs.list(lg_thread)
        assert all(r["status"] not in ("pending", "running") for r in listed), listed
    finally:
        await js.update_stream(config)
        await nc.close()
    # Nothing refused is left holding either thread.
    again = await http.post("/api/v1/chat", json=ask)
    assert again.status_code == 200 and again.json()["status"] == "success", again.text
    done = await client.runs.wait(lg_thread, "echo", input=messages)
    assert isinstance(done, dict) and done["messages"], done


async def test_a_refused_progress_event_fails_no_document_and_arrives_later(
    platform: Platform, http: httpx.AsyncClient
) -> None:
    """INGEST_EVENTS refusing (full) no longer fails indexing: the document is indexed, its
    progress and outcome wait in ingest's outbox, and once the stream accepts again they arrive,
    each once, so the upload's progress stream ends with `indexed`."""
    nc = await nats.connect(platform.engines.urls()["nats"])
    js = nc.jetstream()
    config = (await js.stream_info(INGEST_EVENTS.name)).config
    restored = False
    await js.update_stream(dataclasses.replace(config, max_msg_size=16))
    try:
        text = f"Refused progress {uuid.uuid4().hex}: the pager rotates weekly.".encode()
        up = await http.post(
            "/api/v1/documents", files={"file": ("refused-progress.txt", text, "text/plain")}
        )
        assert up.status_code == 202, up.text
        doc = up.json()["document_id"]
        uploaded_at = time.monotonic()
        deadline = uploaded_at + 90
        status = ""
        while time.monotonic() < deadline and status != "indexed":
            status = (await http.get(f"/api/v1/documents/{doc}")).json().get("status", "")
            assert status != "failed", status
            await asyncio.sleep(0.2)
        assert status == "indexed"  # before the outbox: nak'ed on every attempt, then failed
        ops = f"http://127.0.0.1:{platform.ops_ports['ingest']}/metrics"
        metrics = (await http.get(ops)).text
        assert 'agentbus_deferred_publishes_total{outcome="deferred",stream="INGEST_EVENTS"}' in (
            metrics
        )
        indexed_s = time.monotonic() - uploaded_at
        await js.update_stream(config)
        restored = True
        restored_at = time.monotonic()
        # The progress stream a browser reads ends with `indexed` once the events come through.
        kinds: list[str] = []
        async with http.stream("GET", f"/api/v1/documents/{doc}/events", timeout=120) as events:
            async for line in events.aiter_lines():
                if line.startswith("event: "):
                    kinds.append(line.removeprefix("event: "))
                    if kinds[-1] in ("indexed", "failed"):
                        break
        assert kinds[-1] == "indexed", kinds
        print(
            f"\nINGEST_EVENTS refusing: indexed {indexed_s:.1f}s after upload; its events through"
            f" {time.monotonic() - restored_at:.1f}s after the stream accepted again"
        )
        sub = await js.subscribe(
            s.ingest_progress(doc), stream=INGEST_EVENTS.name, ordered_consumer=True
        )
        ids: list[str] = []
        with contextlib.suppress(TimeoutError):
            while True:
                msg = await sub.next_msg(timeout=1)
                ids.append((msg.headers or {}).get("Nats-Msg-Id", ""))
        await sub.unsubscribe()
        assert ids and len(ids) == len(set(ids)), ids  # nothing doubled by the resends
    finally:
        if not restored:
            await js.update_stream(config)
        await nc.close()
