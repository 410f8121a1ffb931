"""Your own graphs behind the Agent Server API, with the official `langgraph_sdk`, unmodified:
the platform fixture serves a user's langgraph.json from a temporary directory (the `notes`
graphs of services/orchestrator/tests/user_graph: a plain StateGraph on langgraph and
langchain-core, its own state, an interrupt(), the store, two factories) beside the built-ins.
Assistants (defaults with LangGraph's ids, create/patch/versions/latest/delete, search/count,
graph/schemas/subgraphs) live in PostgreSQL per tenant; the graph list comes from the
orchestrator over the bus."""

from __future__ import annotations

from typing import Any
from uuid import UUID, uuid5

import httpx
import pytest
from langgraph_sdk import get_client
from langgraph_sdk.client import LangGraphClient
from langgraph_sdk.errors import ConflictError, NotFoundError, UnprocessableEntityError

from agentbus.runtime.platform import Platform

from .support import register

pytestmark = pytest.mark.e2e

NAMESPACE_GRAPH = UUID("6ba7b821-9dad-11d1-80b4-00c04fd430c8")  # langgraph_api's


def default_id(graph_id: str) -> str:
    return str(uuid5(NAMESPACE_GRAPH, graph_id))


def ask(text: str) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": text}]}


async def test_user_graph_streams_keeps_history_and_resumes(client: LangGraphClient) -> None:
    thread = (await client.threads.create())["thread_id"]
    parts = [
        p
        async for p in client.runs.stream(
            thread,
            "notes",
            input=ask("please approve the trip"),
            stream_mode=["values", "messages-tuple", "custom"],
        )
    ]
    events = [p.event for p in parts]
    assert events[0] == "metadata" and "error" not in events
    chunks = [p.data for p in parts if p.event == "messages"]
    text = "".join(c[0]["content"] for c in chunks)
    assert text.startswith("You said: please approve the trip (")
    assert {c[1]["langgraph_node"] for c in chunks} == {"reply"}
    assert {c[0]["type"] for c in chunks} == {"AIMessageChunk"}
    assert {"progress": "replying"} in [p.data for p in parts if p.event == "custom"]
    last = [p.data for p in parts if p.event == "values"][-1]
    # Paused at the graph's interrupt(): the values carry it, as LangGraph streams them.
    assert last["__interrupt__"][0]["value"] == {"question": "Approve this note?"}
    # The streamed chunks are the message the state keeps (same id).
    answer = last["messages"][-1]
    assert answer["type"] == "ai" and answer["content"] == text
    assert chunks[0][0]["id"] == answer["id"]

    state = await client.threads.get_state(thread)
    assert state["next"] == ["review"]
    assert state["interrupts"][0]["value"] == {"question": "Approve this note?"}
    got = await client.threads.get(thread)
    assert got["status"] == "interrupted"
    assert got["metadata"]["graph_id"] == "notes"
    assert got["metadata"]["assistant_id"] == default_id("notes")

    result = await client.runs.wait(thread, "notes", command={"resume": "yes"})
    assert isinstance(result, dict)
    assert result["approved"] == "yes"
    assert [m["type"] for m in result["messages"]] == ["human", "ai", "ai"]
    assert result["messages"][-1]["content"] == "approved: yes"
    history = await client.threads.get_history(thread, limit=10)
    assert history[0]["values"] == result
    assert history[0]["next"] == [] and ["review"] in [h["next"] for h in history]
    # Agent Chat UI lists a graph's threads by their metadata.
    listed = await client.threads.search(metadata={"graph_id": "notes"}, limit=100)
    assert thread in {t["thread_id"] for t in listed}


async def test_factories_and_the_store_across_threads(client: LangGraphClient) -> None:
    # The store outlives threads: a note remembered on one thread counts on the next.
    first = await client.runs.wait(None, "notes_factory", input=ask("note from a factory"))
    second = await client.runs.wait(None, "notes_async", input=ask("note from an async one"))
    assert isinstance(first, dict) and isinstance(second, dict)
    n1 = first["notes"]
    assert second["notes"] == n1 + 1
    assert second["messages"][-1]["content"].startswith("You said: note from an async one")


async def test_assistants_api(client: LangGraphClient, http: httpx.AsyncClient) -> None:
    # Every served graph has its default assistant; the graph name works as its id.
    notes = await client.assistants.get("notes")
    assert notes["assistant_id"] == default_id("notes") and notes["graph_id"] == "notes"
    assert notes["metadata"] == {"created_by": "system"} and notes["version"] == 1
    assert (await client.assistants.get(default_id("notes")))["assistant_id"] == notes[
        "assistant_id"
    ]
    factory = await client.assistants.get("notes_factory")
    assert factory["description"] == "The notes graph from a factory"

    tag = f"t{id(client)}"
    mine = await client.assistants.create(
        "notes",
        config={"configurable": {"mood": "cheerful"}},
        context={"signature": "your notes bot"},
        metadata={"tag": tag, "team": "a"},
        name="Cheerful notes",
    )
    assert mine["version"] == 1 and mine["name"] == "Cheerful notes"
    with pytest.raises(ConflictError):
        await client.assistants.create("notes", assistant_id=mine["assistant_id"])
    same = await client.assistants.create(
        "notes", assistant_id=mine["assistant_id"], if_exists="do_nothing"
    )
    assert same["assistant_id"] == mine["assistant_id"] and same["name"] == "Cheerful notes"
    with pytest.raises(NotFoundError):
        await client.assistants.create("no-such-graph")

    # A graph that fails to build is a reason code; its own words stay in the log (issue 13,
    # point 11).
    refusing = await client.assistants.create(
        "notes_factory", config={"configurable": {"refuse": True}}
    )
    drawn = await http.get(f"/assistants/{refusing['assistant_id']}/graph")
    assert drawn.status_code == 424, drawn.text
    assert drawn.json() == {
        "detail": "Graph 'notes_factory' failed (graph_error)",
        "reason": "graph_error",
    }

    # Its config and context reach the graph at run time (the run's own go on top).
    result = await client.runs.wait(None, mine["assistant_id"], input=ask("hi"))
    assert isinstance(result, dict)
    assert result["messages"][-1]["content"].endswith("-- your notes bot [cheerful]")
    result = await client.runs.wait(
        None, mine["assistant_id"], input=ask("hi"), config={"configurable": {"mood": "calm"}}
    )
    assert isinstance(result, dict) and result["messages"][-1]["content"].endswith("[calm]")

    # PATCH makes a version; /latest goes back; metadata merges.
    patched = await client.assistants.update(
        mine["assistant_id"], context={"signature": "v2"}, metadata={"team": "b"}
    )
    assert patched["version"] == 2 and patched["context"] == {"signature": "v2"}
    assert patched["metadata"] == {"tag": tag, "team": "b"}
    assert patched["config"] == {"configurable": {"mood": "cheerful"}}
    versions = await client.assistants.get_versions(mine["assistant_id"])
    assert [v["version"] for v in versions] == [2, 1]
    assert [
        v["version"]
        for v in await client.assistants.get_versions(mine["assistant_id"], metadata={"team": "a"})
    ] == [1]
    back = await client.assistants.set_latest(mine["assistant_id"], 1)
    assert back["version"] == 1 and back["context"] == {"signature": "your notes bot"}
    with pytest.raises(NotFoundError):
        await client.assistants.set_latest(mine["assistant_id"], 9)

    # Search and count with metadata filters.
    other = await client.assistants.create("echo", metadata={"tag": tag}, name="Second")
    found = await client.assistants.search(metadata={"tag": tag}, sort_by="name", sort_order="asc")
    assert [a["name"] for a in found] == ["Cheerful notes", "Second"]
    assert await client.assistants.count(metadata={"tag": tag}) == 2
    assert await client.assistants.count(metadata={"tag": tag}, graph_id="echo") == 1
    assert await client.assistants.count(name="cheerful") >= 1
    page = await client.assistants.search(metadata={"tag": tag}, limit=1, response_format="object")
    assert len(page["assistants"]) == 1 and page["next"] == "1"
    selected = await client.assistants.search(metadata={"tag": tag}, select=["assistant_id"])
    assert all(set(a) == {"assistant_id"} for a in selected)

    # The graph as drawn, its schemas and subgraphs, from the orchestrator.
    drawn = await client.assistants.get_graph(mine["assistant_id"])
    assert {n["id"] for n in drawn["nodes"]} == {
        "__start__",
        "remember",
        "reply",
        "review",
        "__end__",
    }
    assert (await client.assistants.get_graph("agent", xray=True))["nodes"]
    schemas = await client.assistants.get_schemas("notes")
    assert set(schemas["state_schema"]["properties"]) == {"messages", "notes", "approved"}
    assert schemas["graph_id"] == "notes"
    assert await client.assistants.get_subgraphs("notes") == {}
    assert (await http.get(f"/assistants/{mine['assistant_id']}/graph?xray=-1")).status_code == 422

    # Delete: gone for good; a default assistant stays while its graph is served.
    await client.assistants.delete(other["assistant_id"])
    with pytest.raises(NotFoundError):
        await client.assistants.get(other["assistant_id"])
    with pytest.raises(ConflictError):
        await client.assistants.delete("notes")
    with pytest.raises(UnprocessableEntityError):
        await client.assistants.update(mine["assistant_id"], name="x" * 300)
    with pytest.raises(httpx.HTTPStatusError) as err:
        await client.runs.wait(None, "nobody", input=ask("hi"))
    assert err.value.response.status_code == 404


async def test_assistants_belong_to_their_tenant(
    platform: Platform, client: LangGraphClient
) -> None:
    mine = await client.assistants.create("echo", name="Private")
    async with httpx.AsyncClient(base_url=platform.gateway_url, timeout=30) as anon:
        reg = await register(
            anon,
            {
                "email": "assist@example.com",
                "password": "Sup3r-secret!",
                "tenant_name": "Assist Co",
            },
        )
        assert reg.status_code == 201, reg.text
        login = await anon.post(
            "/api/v1/auth/login",
            data={"username": "assist@example.com", "password": "Sup3r-secret!"},
        )
        token = login.json()["access_token"]
    other = get_client(
        url=platform.gateway_url, api_key=None, headers={"Authorization": f"Bearer {token}"}
    )
    try:
        with pytest.raises(NotFoundError):
            await other.assistants.get(mine["assistant_id"])
        with pytest.raises(httpx.HTTPStatusError) as err:
            await other.runs.wait(None, mine["assistant_id"], input=ask("hi"))
        assert err.value.response.status_code == 404
        names = {a["name"] for a in await other.assistants.search(limit=100)}
        assert "Private" not in names and "echo" in names
    finally:
        await other.aclose()
