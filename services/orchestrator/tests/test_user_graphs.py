"""A user's graph from a langgraph.json in a temporary directory, run over the real bus with
the PostgreSQL checkpointer and store: events, state, interrupt/resume, store, factories."""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client as NatsClient

from agentbus.contracts import (
    GRAPHS_DESCRIBE,
    GraphDescribeRequest,
    RunEvent,
    ThreadState,
    ThreadStateRequest,
    new_id,
)
from agentbus.contracts import subjects as s
from agentbus.orchestrator.app import build
from agentbus.orchestrator.settings import OrchestratorSettings
from agentbus.runtime.chassis import StartupError
from agentbus.runtime.testing import running

from .test_runs import collect, submit

USER_GRAPH = Path(__file__).with_name("user_graph")


@pytest.fixture
async def user_orchestrator(
    service_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[NatsClient]:
    project = tmp_path / "project"
    shutil.copytree(USER_GRAPH, project)
    monkeypatch.setenv("AGENTBUS_LANGGRAPH_CONFIG", str(project / "langgraph.json"))
    monkeypatch.delenv("NOTES_GREETING", raising=False)
    monkeypatch.setattr(sys, "path", list(sys.path))
    service = build(OrchestratorSettings())
    async with running(service):
        nc = await nats.connect(service_env["AGENTBUS_NATS_URL"])
        yield nc
        await nc.close()


async def state_of(nc: NatsClient, tenant: str, thread: str) -> ThreadState:
    req = ThreadStateRequest(tenant_id=tenant, thread_id=thread, history_limit=20)
    reply = await nc.request(s.THREADS_STATE, req.model_dump_json().encode(), timeout=10)
    return ThreadState.model_validate_json(reply.data)


def tokens(events: list[RunEvent]) -> str:
    return "".join(e.data["text"] for e in events if e.type == "token")


@pytest.mark.parametrize("graph_id", ["notes", "notes_factory", "notes_async"])
async def test_user_graph_streams_and_keeps_state(
    user_orchestrator: NatsClient, graph_id: str
) -> None:
    nc, thread = user_orchestrator, new_id()
    run = await submit(
        nc,
        assistant_id=graph_id,
        thread_id=thread,
        input={"messages": [{"type": "human", "role": "user", "content": "buy milk"}]},
        stream_modes=["values", "updates"],
    )
    got = await collect(nc, run.run_id)
    assert got[-1].type == "end" and got[-1].status == "success", got[-1]
    # The fake chat model streamed its answer, message chunks included, with the node's name.
    assert tokens(got).strip() == "You said: buy milk (1 notes)"
    token = next(e for e in got if e.type == "token")
    assert token.node == "reply" and token.data["message"]["type"] == "AIMessageChunk"
    assert [e.node for e in got if e.type == "node_start"] == ["remember", "reply"]
    assert {"progress": "replying"} in [e.data for e in got if e.type == "custom"]
    assert got[-1].data["answer"] == "You said: buy milk (1 notes)"

    state = await state_of(nc, "acme", thread)
    messages = state.current.values["messages"]
    assert [m["type"] for m in messages] == ["human", "ai"]
    assert messages[0]["content"] == "buy milk" and "role" not in messages[0]
    assert messages[0]["additional_kwargs"] == {}
    assert state.current.values["notes"] == 1
    assert len(state.history) >= 3
    assert state.current.metadata["graph_id"] == graph_id


async def test_user_graph_interrupt_resume_and_store(user_orchestrator: NatsClient) -> None:
    nc, thread = user_orchestrator, new_id()
    tenant, other_tenant = f"t{new_id()[:8]}", f"t{new_id()[:8]}"  # a store of their own
    run = await submit(
        nc,
        tenant_id=tenant,
        assistant_id="notes",
        thread_id=thread,
        input={"messages": [{"role": "user", "content": "please approve the budget"}]},
    )
    got = await collect(nc, run.run_id)
    assert got[-1].status == "interrupted"
    assert got[-1].data["interrupts"] == [{"question": "Approve this note?"}]
    state = await state_of(nc, tenant, thread)
    assert state.current.next == ["review"]
    assert state.current.interrupts[0]["value"] == {"question": "Approve this note?"}

    resumed = await submit(
        nc, tenant_id=tenant, assistant_id="notes", thread_id=thread, command={"resume": "yes"}
    )
    got = await collect(nc, resumed.run_id)
    assert got[-1].status == "success"
    state = await state_of(nc, tenant, thread)
    assert state.current.values["approved"] == "yes"
    assert state.current.values["messages"][-1]["content"] == "approved: yes"

    # The store outlives the thread: a new thread of the same tenant sees both notes; another
    # tenant sees only its own.
    again = await submit(
        nc,
        tenant_id=tenant,
        assistant_id="notes",
        input={"messages": [{"role": "user", "content": "call mum"}]},
    )
    assert (await collect(nc, again.run_id))[-1].data["answer"].endswith("(2 notes)")
    other = await submit(
        nc,
        tenant_id=other_tenant,
        assistant_id="notes",
        input={"messages": [{"role": "user", "content": "call mum"}]},
    )
    assert (await collect(nc, other.run_id))[-1].data["answer"].endswith("(1 notes)")


async def test_graph_that_fails_to_import_stops_start_up(
    service_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "broken.py").write_text("from langgraph.graph import StateGraph\n\nraise_here(\n")
    (tmp_path / "langgraph.json").write_text('{"graphs": {"broken": "./broken.py:graph"}}')
    monkeypatch.setenv("AGENTBUS_LANGGRAPH_CONFIG", str(tmp_path / "langgraph.json"))
    with pytest.raises(StartupError) as err:
        build(OrchestratorSettings())
    assert f"{tmp_path / 'broken.py'}, line 3" in str(err.value)
    assert "SyntaxError" in str(err.value)


async def describe(nc: NatsClient, **fields: object) -> dict[str, object]:
    req = GraphDescribeRequest(tenant_id="acme", **fields)  # type: ignore[arg-type]
    reply = await nc.request(GRAPHS_DESCRIBE, req.model_dump_json().encode(), timeout=10)
    data: dict[str, object] = json.loads(reply.data)
    return data


async def test_graphs_are_described_over_the_bus(user_orchestrator: NatsClient) -> None:
    listed = await describe(user_orchestrator)
    graphs = {g["graph_id"]: g for g in listed["graphs"]}  # type: ignore[attr-defined,index]
    assert {"agent", "echo", "steps", "notes", "notes_factory", "notes_async"} <= set(graphs)
    assert graphs["notes_factory"]["description"] == "The notes graph from a factory"

    drawn = (await describe(user_orchestrator, aspect="graph", graph_id="notes_factory"))["detail"]
    nodes = {n["id"] for n in drawn["nodes"]}  # type: ignore[index]
    assert {"__start__", "remember", "reply", "review", "__end__"} == nodes
    assert {"source": "remember", "target": "reply"} in [
        {k: e[k] for k in ("source", "target")}
        for e in drawn["edges"]  # type: ignore[index]
    ]

    schemas = (await describe(user_orchestrator, aspect="schemas", graph_id="notes"))["detail"]
    assert schemas["graph_id"] == "notes"  # type: ignore[index]
    assert set(schemas["state_schema"]["properties"]) == {"messages", "notes", "approved"}  # type: ignore[index]
    assert "messages" in schemas["input_schema"]["properties"]  # type: ignore[index]

    subgraphs = await describe(user_orchestrator, aspect="subgraphs", graph_id="notes")
    assert subgraphs["detail"] == {}

    missing = await describe(user_orchestrator, aspect="schemas", graph_id="nope")
    assert missing["reason"] == "not_found"
