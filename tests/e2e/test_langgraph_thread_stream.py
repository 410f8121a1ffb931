"""`GET /threads/{id}/stream` with the official `langgraph_sdk` (`threads.join_stream`): the
thread's runs one after another, open until the client leaves, resumable by event id."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from langgraph_sdk.client import LangGraphClient
from langgraph_sdk.schema import StreamPart

pytestmark = pytest.mark.e2e


def ask(text: str) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": text}]}


def said(part: StreamPart) -> str | None:
    messages = part.data.get("messages") if isinstance(part.data, dict) else None
    return str(messages[-1]["content"]) if messages else None


async def read_until(
    client: LangGraphClient,
    thread: str,
    last_text: str,
    parts: list[StreamPart] | None = None,
    **kwargs: Any,
) -> list[StreamPart]:
    """The thread stream's parts (into `parts` as they come) up to the values saying `last_text`."""
    parts = [] if parts is None else parts
    async with asyncio.timeout(60):
        # run_modes (the default): each run in its own modes, `values` for these runs.
        async for part in await client.threads.join_stream(thread, **kwargs):
            parts.append(part)
            if part.event == "values" and said(part) == last_text:
                return parts
    raise AssertionError("the thread stream ended")


async def test_the_thread_stream_follows_each_run_and_resumes(client: LangGraphClient) -> None:
    thread = (await client.threads.create())["thread_id"]
    first = await client.runs.wait(thread, "echo", input=ask("first"))
    assert isinstance(first, dict) and first["messages"][-1]["content"] == "first"
    await client.runs.wait(thread, "echo", input=ask("second"))

    # From the thread's first run ("-"), then the runs that start while it is open.
    parts: list[StreamPart] = []

    reader = asyncio.create_task(read_until(client, thread, "third", parts, last_event_id="-"))
    async with asyncio.timeout(60):
        while not any(said(p) == "second" for p in parts if p.event == "values"):
            assert not reader.done(), reader
            await asyncio.sleep(0.05)
    third = await client.runs.create(thread, "echo", input=ask("third"))
    await reader
    runs = [p.data["run_id"] for p in parts if p.event == "metadata"]
    assert len(runs) == 3 and runs[2] == third["run_id"]
    texts = [said(p) for p in parts if p.event == "values"]
    assert texts.index("first") < texts.index("second") < texts.index("third")
    assert all(p.id and p.id.split(":")[0] in runs for p in parts if p.event == "values")

    # Resumed after a frame of the second run: the rest of it, then the third; nothing before.
    second_run = runs[1]
    mark = next(p.id for p in parts if p.id and p.id.startswith(second_run + ":"))
    assert mark is not None
    resumed = await read_until(client, thread, "third", last_event_id=mark)
    assert all(p.id is None or p.id.split(":")[0] in runs[1:] for p in resumed)
    assert mark not in [p.id for p in resumed]


async def test_thread_stream_bad_requests(http: httpx.AsyncClient) -> None:
    thread = (await http.post("/threads", json={})).json()["thread_id"]
    lifecycle = await http.get(f"/threads/{thread}/stream", params={"stream_mode": "lifecycle"})
    assert lifecycle.status_code == 422 and "run_modes" in lifecycle.text
    debug = await http.get(f"/threads/{thread}/stream", params={"stream_mode": "debug"})
    assert debug.status_code == 422
    bad_id = await http.get(f"/threads/{thread}/stream", headers={"Last-Event-ID": "nonsense"})
    assert bad_id.status_code == 400
    missing = await http.get("/threads/no-such-thread/stream")
    assert missing.status_code == 404
