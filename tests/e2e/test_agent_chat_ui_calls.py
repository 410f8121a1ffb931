"""The calls Agent Chat UI (langchain-ai/agent-chat-ui) makes, replayed with the official
`langgraph_sdk` so the suite checks them without building the UI: the sequence and bodies
logged from the real UI in tools/agent-chat-ui/calls.txt (tools/agent-chat-ui/drive.py).
Over the `notes` user graph (it interrupts when asked to approve)."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from langgraph_sdk.client import LangGraphClient
from langgraph_sdk.schema import StreamPart

pytestmark = pytest.mark.e2e

# What the UI's submit() asks for: useStream adds messages-tuple and custom to its ["values"].
MODES: Any = ["values", "messages-tuple", "custom"]


def human(text: str) -> dict[str, Any]:
    """A message as the UI's composer builds it: its own id, content blocks."""
    return {"id": str(uuid.uuid4()), "type": "human", "content": [{"type": "text", "text": text}]}


def checkpoint_of(state: Any) -> Any:
    """The checkpoint the UI sends back: `checkpoint_map` null, as in calls.txt."""
    return {
        "checkpoint_id": state["checkpoint"]["checkpoint_id"],
        "checkpoint_ns": "",
        "checkpoint_map": None,
    }


async def submit(
    client: LangGraphClient, thread: str, **kwargs: Any
) -> tuple[list[StreamPart], dict[str, Any]]:
    """One `POST /threads/{id}/runs/stream` as the UI sends it; the parts and the last values."""
    parts = [
        p
        async for p in client.runs.stream(
            thread,
            "notes",
            stream_subgraphs=kwargs.pop("stream_subgraphs", True),
            stream_resumable=kwargs.pop("stream_resumable", True),
            on_disconnect=kwargs.pop("on_disconnect", "continue"),
            stream_mode=kwargs.pop("stream_mode", MODES),
            **kwargs,
        )
    ]
    events = [p.event for p in parts]
    assert events[0] == "metadata" and "error" not in events, events
    return parts, [p.data for p in parts if p.event == "values"][-1]


async def test_agent_chat_ui_call_sequence(
    client: LangGraphClient, http: httpx.AsyncClient
) -> None:
    # Connecting: the UI checks the server with GET /info (x-api-key) and lists the graph's
    # threads by metadata.
    assert (await http.get("/info")).status_code == 200
    listing: dict[str, Any] = {"metadata": {"graph_id": "notes"}, "limit": 100, "offset": 0}
    await client.threads.search(**listing)

    # Chat: a new thread (metadata {}), then a streamed run with the UI's stream modes.
    thread = (await client.threads.create(metadata={}))["thread_id"]
    first = human("hello from the UI")
    parts, values = await submit(client, thread, input={"messages": [first]})
    chunks = [p.data for p in parts if p.event == "messages"]
    assert len(chunks) > 1, "the answer streams in several chunks"
    answer = values["messages"][-1]
    assert answer["type"] == "ai" and answer["content"] == "".join(c[0]["content"] for c in chunks)
    assert [m["id"] for m in values["messages"]] == [first["id"], answer["id"]]

    # Thread history (the UI's fetchStateHistory) and the thread list, titled by its first
    # message: search returns each thread's values, as LangGraph's does.
    history: list[Any] = await client.threads.get_history(thread, limit=10)
    listed: dict[str, Any] = {t["thread_id"]: t for t in await client.threads.search(**listing)}
    assert listed[thread]["values"]["messages"][0]["content"] == first["content"]
    assert listed[thread]["status"] == "idle"
    only_ids: list[Any] = await client.threads.search(**listing, select=["thread_id"])
    assert {"thread_id": thread} in only_ids

    # Regenerate: no input, `checkpoint` = the parent of the state the answer first appears in.
    seen = next(s for s in reversed(history) if answer["id"] in ids(s["values"]))
    parent = seen["parent_checkpoint"]
    assert parent is not None
    _, again = await submit(client, thread, checkpoint=checkpoint_of({"checkpoint": parent}))
    assert [m["type"] for m in again["messages"]] == ["human", "ai"]
    assert again["messages"][0]["id"] == first["id"] and again["messages"][-1]["id"] != answer["id"]
    history = await client.threads.get_history(thread, limit=10)
    forks = [s for s in history if s["parent_checkpoint"] == parent]
    assert len(forks) == 2, "the regenerated answer is a second branch from the same parent"

    # The next message goes on from the latest checkpoint (the UI sends it with the input);
    # this one makes the graph interrupt.
    ask = human("please approve the note")
    _, paused = await submit(
        client, thread, input={"messages": [ask]}, checkpoint=checkpoint_of(history[0])
    )
    assert paused["__interrupt__"][0]["value"] == {"question": "Approve this note?"}
    assert [m["type"] for m in paused["messages"]] == ["human", "ai", "human", "ai"]
    got: Any = await client.threads.get(thread)
    assert got["status"] == "interrupted"
    assert got["interrupts"]  # the UI reads the interrupt from the thread's state
    history = await client.threads.get_history(thread, limit=10)
    assert history[0]["next"] == ["review"]

    # Resume: input {}, a `command`, the latest checkpoint, its own stream modes.
    decisions = {"decisions": [{"type": "approve"}]}
    _, done = await submit(
        client,
        thread,
        input={},
        command={"resume": decisions},
        checkpoint=checkpoint_of(history[0]),
        stream_mode=["messages-tuple", "values", "custom"],
        on_disconnect="cancel",
        stream_resumable=False,
    )
    assert done["messages"][-1]["content"] == f"approved: {decisions}"
    assert "__interrupt__" not in done
    assert (await client.threads.get(thread))["status"] == "idle"
    listed = {t["thread_id"]: t for t in await client.threads.search(**listing)}
    assert listed[thread]["values"]["messages"][-1]["content"] == f"approved: {decisions}"


def ids(values: dict[str, Any]) -> list[str]:
    return [m["id"] for m in values.get("messages", [])]
