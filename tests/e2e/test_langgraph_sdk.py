"""The official `langgraph_sdk` client, unmodified, against the gateway over the real platform:
threads, streamed runs in LangGraph's stream modes, wait/join/cancel, double-texting with every
multitask strategy enforced, Last-Event-ID resume, bad input."""

from __future__ import annotations

import asyncio
import json
import signal
from typing import Any
from uuid import UUID, uuid5

import httpx
import nats
import pytest
from langgraph_sdk import get_client
from langgraph_sdk.client import LangGraphClient
from langgraph_sdk.errors import ConflictError, NotFoundError, UnprocessableEntityError
from nats.js.api import DeliverPolicy

from agentbus.contracts import RunEvent, RunRequested
from agentbus.runtime.platform import Platform
from agentbus.runtime.thread_runs import ThreadRuns, ThreadRunsKV, thread_runs_key

from .support import dev_key, register

pytestmark = pytest.mark.e2e

NAMESPACE_GRAPH = UUID("6ba7b821-9dad-11d1-80b4-00c04fd430c8")  # langgraph_api's


def steps(n: int, delay: float) -> dict[str, Any]:
    """Input of the `steps` assistant: n checkpointed steps of `delay` seconds."""
    return {"steps": n, "delay": delay}


def ask(text: str) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": text}]}


async def wait_status(
    client: LangGraphClient, thread_id: str, run_id: str, wanted: set[str], timeout: float = 120
) -> str:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        status = str((await client.runs.get(thread_id, run_id))["status"])
        if status in wanted:
            return status
        assert asyncio.get_running_loop().time() < deadline, f"run stayed {status}"
        await asyncio.sleep(0.1)


async def test_stream_values_updates_and_messages_tuple(client: LangGraphClient) -> None:
    assert (await client.assistants.get("echo"))["graph_id"] == "echo"
    thread = await client.threads.create(metadata={"suite": "sdk"})
    created: list[Any] = []
    parts = [
        part
        async for part in client.runs.stream(
            thread["thread_id"],
            "echo",
            input=ask("hello there world"),
            stream_mode=["values", "updates", "messages-tuple"],
            on_run_created=created.append,
        )
    ]
    assert parts[0].event == "metadata"
    run_id = parts[0].data["run_id"]
    assert created and created[0]["run_id"] == run_id
    assert created[0]["thread_id"] == thread["thread_id"]
    events = {p.event for p in parts}
    assert {"values", "updates", "messages"} <= events and "error" not in events
    tokens = [p.data for p in parts if p.event == "messages"]
    assert "".join(chunk["content"] for chunk, _ in tokens).strip() == "hello there world"
    assert all(chunk["type"] == "AIMessageChunk" for chunk, _ in tokens)
    assert tokens[0][1]["langgraph_node"] == "echo" and tokens[0][1]["run_id"] == run_id
    updates = [p.data for p in parts if p.event == "updates"]
    assert any("echo" in u for u in updates)
    final = [p.data for p in parts if p.event == "values"][-1]
    assert final["messages"][-1] == {
        "role": "assistant",
        "content": "hello there world",
        "type": "ai",
    }

    state = await client.threads.get_state(thread["thread_id"])
    assert state["values"]["messages"][-1]["content"] == "hello there world"
    assert state["checkpoint"]["checkpoint_id"] and state["next"] == []
    got = await client.threads.get(thread["thread_id"])
    # The first run marks the thread with its graph and assistant, as LangGraph does.
    assert got["status"] == "idle" and got["metadata"] == {
        "suite": "sdk",
        "graph_id": "echo",
        "assistant_id": str(uuid5(NAMESPACE_GRAPH, "echo")),
    }
    assert (await client.runs.get(thread["thread_id"], run_id))["status"] == "success"

    # runs.wait: the thread's values at the end (LangChain-style input messages work too).
    result = await client.runs.wait(
        thread["thread_id"], "echo", input={"messages": [{"type": "human", "content": "again"}]}
    )
    assert isinstance(result, dict)
    assert [m["content"] for m in result["messages"]] == [
        "hello there world",
        "hello there world",
        "again",
        "again",
    ]
    history = await client.threads.get_history(thread["thread_id"], limit=3)
    assert len(history) == 3 and history[0]["values"] == result
    runs = await client.runs.list(thread["thread_id"])
    assert [r["status"] for r in runs] == ["success", "success"]


async def test_background_run_join_cancel_and_custom_events(client: LangGraphClient) -> None:
    thread = await client.threads.create()
    run = await client.runs.create(thread["thread_id"], "steps", input=steps(2, 0.05))
    assert run["status"] in ("pending", "running") and run["multitask_strategy"] == "reject"
    joined = await client.runs.join(thread["thread_id"], run["run_id"])
    assert joined["done"] == [1, 2]
    assert (await client.runs.get(thread["thread_id"], run["run_id"]))["status"] == "success"

    custom = [
        part.data
        async for part in client.runs.stream(
            thread["thread_id"],
            "steps",
            input=steps(3, 0.05),
            stream_mode=["custom", "events"],
        )
        if part.event == "custom"
    ]
    assert custom == [{"step": 3, "of": 3}]

    slow = await client.runs.create(thread["thread_id"], "steps", input=steps(40, 0.2))
    await wait_status(client, thread["thread_id"], slow["run_id"], {"running"})
    await client.runs.cancel(thread["thread_id"], slow["run_id"], wait=True)
    cancelled = await client.runs.get(thread["thread_id"], slow["run_id"])
    assert cancelled["status"] == "interrupted"  # LangGraph's status for a cancelled run
    with pytest.raises(ConflictError):
        await client.runs.cancel(thread["thread_id"], slow["run_id"])


async def test_a_run_whose_end_is_out_cannot_be_cancelled_before_its_thread_is_free(
    platform: Platform, client: LangGraphClient
) -> None:
    """The orchestrator publishes a run's `end`, then frees the thread's slot: in between the
    slot still names the run as active. A cancel then is refused (409), as after the release.
    The moment is made here by putting the ended run back in its slot (CI once hit it)."""
    thread = await client.threads.create()
    run = await client.runs.create(thread["thread_id"], "steps", input=steps(1, 0))
    await client.runs.join(thread["thread_id"], run["run_id"])
    nc = await nats.connect(platform.engines.urls()["nats"])
    kv = await ThreadRunsKV.open(nc.jetstream())
    try:
        held = ThreadRuns(
            active=RunRequested(
                tenant_id="dev", run_id=run["run_id"], thread_id=thread["thread_id"]
            )
        )
        await kv.kv.put(
            thread_runs_key("dev", thread["thread_id"]), held.model_dump_json().encode()
        )
        with pytest.raises(ConflictError) as refused:
            await client.runs.cancel(thread["thread_id"], run["run_id"])
        assert "already ended (success)" in refused.value.response.json()["detail"]
    finally:
        await kv.kv.delete(thread_runs_key("dev", thread["thread_id"]))
        await nc.close()


async def test_double_texting_reject_refuses_the_second_run(client: LangGraphClient) -> None:
    thread = await client.threads.create()
    first = await client.runs.create(thread["thread_id"], "steps", input=steps(30, 0.2))
    with pytest.raises(ConflictError) as refused:
        await client.runs.create(thread["thread_id"], "echo", input=ask("too soon"))
    assert refused.value.response.json()["detail"].startswith("Thread")
    assert len(await client.runs.list(thread["thread_id"])) == 1
    assert (await client.threads.get(thread["thread_id"]))["status"] == "busy"
    await client.runs.cancel(thread["thread_id"], first["run_id"], wait=True)
    # Released at the end of the run: the thread takes a new one.
    again = await client.runs.wait(thread["thread_id"], "steps", input=steps(1, 0))
    assert isinstance(again, dict) and again["done"]


async def checkpoint_runs(client: LangGraphClient, thread_id: str) -> list[str]:
    """The run id of each checkpoint, oldest first, without repeats."""
    history = await client.threads.get_history(thread_id, limit=100)
    order: list[str] = []
    for state in reversed(history):
        run_id = state["metadata"].get("run_id")
        if run_id and (not order or order[-1] != run_id):
            order.append(run_id)
    return order


async def test_double_texting_enqueue_runs_both_in_order(client: LangGraphClient) -> None:
    thread = await client.threads.create()
    first = await client.runs.create(thread["thread_id"], "steps", input=steps(4, 0.2))
    second = await client.runs.create(
        thread["thread_id"],
        "steps",
        input=steps(6, 0.05),
        multitask_strategy="enqueue",
    )
    assert second["status"] == "pending" and second["multitask_strategy"] == "enqueue"
    third = await client.runs.create(
        thread["thread_id"],
        "steps",
        input=steps(7, 0.05),
        multitask_strategy="enqueue",
    )
    last = await client.runs.join(thread["thread_id"], third["run_id"])
    assert last["done"] == [1, 2, 3, 4, 5, 6, 7]
    for run in (first, second, third):
        assert (await client.runs.get(thread["thread_id"], run["run_id"]))["status"] == "success"
    # Not interleaved: every checkpoint of a run comes after all of the previous run's.
    assert await checkpoint_runs(client, thread["thread_id"]) == [
        first["run_id"],
        second["run_id"],
        third["run_id"],
    ]


async def test_double_texting_interrupt_stops_the_first(client: LangGraphClient) -> None:
    thread = await client.threads.create()
    first = await client.runs.create(thread["thread_id"], "steps", input=steps(30, 0.2))
    await wait_status(client, thread["thread_id"], first["run_id"], {"running"})
    # The same assistant: a thread's checkpoints belong to one graph.
    parts = [
        part
        async for part in client.runs.stream(
            thread["thread_id"],
            "steps",
            input=steps(1, 0),
            multitask_strategy="interrupt",
            stream_mode="values",
        )
    ]
    assert parts[0].event == "metadata" and parts[-1].event == "values"
    done = parts[-1].data["done"]
    assert done == list(range(1, len(done) + 1)) and len(done) < 30
    assert (await client.runs.get(thread["thread_id"], first["run_id"]))["status"] == "interrupted"
    second_id = parts[0].data["run_id"]
    assert (await client.runs.get(thread["thread_id"], second_id))["status"] == "success"


async def test_double_texting_rollback_forgets_the_first(client: LangGraphClient) -> None:
    thread = await client.threads.create()
    base = await client.runs.wait(thread["thread_id"], "steps", input=steps(1, 0))
    assert isinstance(base, dict) and base["done"] == [1]
    first = await client.runs.create(thread["thread_id"], "steps", input=steps(30, 0.1))
    await wait_status(client, thread["thread_id"], first["run_id"], {"running"})
    await asyncio.sleep(0.5)  # a few checkpoints of the first run exist now
    result = await client.runs.wait(
        thread["thread_id"], "steps", input=steps(2, 0), multitask_strategy="rollback"
    )
    # The second run continued from the state before the first one: one more step after [1].
    assert isinstance(result, dict) and result["done"] == [1, 2]
    assert (await client.runs.get(thread["thread_id"], first["run_id"]))["status"] == "interrupted"
    assert first["run_id"] not in await checkpoint_runs(client, thread["thread_id"])


async def test_on_disconnect_cancel_stops_the_run(client: LangGraphClient) -> None:
    thread = await client.threads.create()
    stream = client.runs.stream(
        thread["thread_id"],
        "steps",
        input=steps(300, 0.2),  # a minute: it can only end `interrupted` by the cancel
        stream_mode="custom",
        on_disconnect="cancel",
    )
    run_id = ""
    async for part in stream:
        if part.event == "metadata":
            run_id = part.data["run_id"]
        if part.event == "custom":
            break
    await stream.aclose()  # type: ignore[attr-defined]
    assert await wait_status(client, thread["thread_id"], run_id, {"interrupted", "success"}) == (
        "interrupted"
    )


def sse_frames(text: str) -> list[dict[str, Any]]:
    frames = []
    for block in text.split("\n\n"):
        fields: dict[str, Any] = {}
        for line in block.splitlines():
            if line.startswith(":"):
                continue
            key, _, value = line.partition(": ")
            fields[key] = value
        if "event" in fields:
            fields["data"] = json.loads(fields.get("data") or "null")
            frames.append(fields)
    return frames


async def test_stream_resumes_after_last_event_id(
    client: LangGraphClient, http: httpx.AsyncClient
) -> None:
    thread = await client.threads.create()
    words = " ".join(f"word{i}" for i in range(150))
    body = {
        "assistant_id": "echo",
        "input": ask(words),
        "stream_mode": ["messages-tuple", "events", "values"],
    }
    url = f"/threads/{thread['thread_id']}/runs/stream"
    seen: list[dict[str, Any]] = []
    async with http.stream("POST", url, json=body) as response:
        assert response.status_code == 200
        location = response.headers["location"]
        run_path = response.headers["content-location"]
        buffer = ""
        async for chunk in response.aiter_text():
            buffer += chunk
            complete, _, buffer = buffer.rpartition("\n\n")
            seen.extend(sse_frames(complete))
            if len(seen) > 40:
                break  # drop the connection mid-answer
    assert location == f"{run_path}/stream"
    last_id = [f for f in seen if "id" in f][-1]["id"]
    async with http.stream("GET", location, headers={"Last-Event-ID": last_id}) as rest:
        seen.extend(sse_frames((await rest.aread()).decode()))
    async with http.stream("GET", location) as whole:
        uninterrupted = sse_frames((await whole.aread()).decode())
    assert [f.get("id") for f in seen] == [f.get("id") for f in uninterrupted]
    assert [(f["event"], f["data"]) for f in seen] == [
        (f["event"], f["data"]) for f in uninterrupted
    ]
    text = "".join(f["data"][0]["content"] for f in seen if f["event"] == "messages")
    assert text.strip() == words


async def test_bad_input_is_refused_and_nothing_is_published(
    platform: Platform, client: LangGraphClient, http: httpx.AsyncClient
) -> None:
    nc = await nats.connect(platform.engines.urls()["nats"])
    js = nc.jetstream()
    before = (await js.stream_info("RUNS")).state.last_seq
    thread = (await client.threads.create())["thread_id"]
    url = f"/threads/{thread}/runs"
    cases: list[tuple[dict[str, Any], int]] = [
        (dict(json={"assistant_id": "echo", "multitask_strategy": "sometimes"}), 422),
        (dict(json={"assistant_id": "echo", "stream_mode": "debug"}), 422),
        (dict(json={"assistant_id": "echo", "surprise": 1}), 422),
        (dict(json={"assistant_id": "echo", "webhook": "http://example.com"}), 422),
        (dict(json={"input": {}}), 422),
        (dict(content=b"{nope", headers={"content-type": "application/json"}), 422),
        (dict(json={"assistant_id": "nobody"}), 404),
    ]
    for kwargs, status in cases:
        for suffix in ("", "/stream", "/wait"):
            response = await http.post(url + suffix, **kwargs)
            assert response.status_code == status, (suffix, kwargs, response.text)
            assert response.json()["detail"]
    missing = await http.post("/threads/no-such-thread/runs", json={"assistant_id": "echo"})
    assert missing.status_code == 404
    with pytest.raises(UnprocessableEntityError):
        await client.runs.create(thread, "echo", multitask_strategy="later")  # type: ignore[arg-type]
    with pytest.raises(NotFoundError):
        await client.assistants.get("nobody")
    assert (await js.stream_info("RUNS")).state.last_seq == before
    await nc.close()
    assert (await client.runs.list(thread)) == []


async def test_other_tenants_threads_are_not_found(
    platform: Platform, client: LangGraphClient
) -> None:
    thread = (await client.threads.create())["thread_id"]
    async with httpx.AsyncClient(base_url=platform.gateway_url, timeout=30) as anon:
        assert (await anon.get(f"/threads/{thread}")).status_code == 401
        reg = await register(
            anon,
            {"email": "lg@example.com", "password": "Sup3r-secret!", "tenant_name": "LG Co"},
        )
        assert reg.status_code == 201, reg.text
        login = await anon.post(
            "/api/v1/auth/login", data={"username": "lg@example.com", "password": "Sup3r-secret!"}
        )
        token = login.json()["access_token"]
        other = get_client(
            url=platform.gateway_url, api_key=None, headers={"Authorization": f"Bearer {token}"}
        )
        with pytest.raises(NotFoundError):
            await other.threads.get(thread)
        with pytest.raises(NotFoundError):
            await other.runs.create(thread, "echo", input=ask("hi"))
        assert await other.threads.search() == []
        await other.aclose()
    assert (await client.threads.get(thread))["thread_id"] == thread


async def test_threads_assistants_and_stateless_runs(
    client: LangGraphClient, http: httpx.AsyncClient
) -> None:
    assert (await http.get("/ok")).json() == {"ok": True}
    assert (await http.get("/info")).json()["flags"]["assistants"] is True
    found = await client.assistants.search(graph_id="steps")
    # The default assistant of a graph has LangGraph's uuid5 id.
    assert [a["assistant_id"] for a in found] == [str(uuid5(NAMESPACE_GRAPH, "steps"))]
    defaults = await client.assistants.search(metadata={"created_by": "system"}, limit=100)
    assert {"agent", "echo", "steps"} <= {a["graph_id"] for a in defaults}

    tag = f"t{id(client)}"
    one = await client.threads.create(metadata={"tag": tag, "n": 1})
    two = await client.threads.create(metadata={"tag": tag, "n": 2})
    with pytest.raises(ConflictError):
        await client.threads.create(thread_id=one["thread_id"])
    same = await client.threads.create(thread_id=one["thread_id"], if_exists="do_nothing")
    assert same["thread_id"] == one["thread_id"]
    hits = await client.threads.search(metadata={"tag": tag}, sort_by="created_at")
    assert [t["thread_id"] for t in hits] == [two["thread_id"], one["thread_id"]]
    assert all(t["status"] == "idle" for t in hits)
    updated = await client.threads.update(one["thread_id"], metadata={"n": 3})
    assert updated["metadata"] == {"tag": tag, "n": 3}
    await client.threads.delete(two["thread_id"])
    with pytest.raises(NotFoundError):
        await client.threads.get(two["thread_id"])
    assert [t["thread_id"] for t in await client.threads.search(metadata={"tag": tag})] == [
        one["thread_id"]
    ]

    # Thread-less: a thread is made for the run.
    created: list[Any] = []
    result = await client.runs.wait(
        None, "echo", input=ask("no thread"), on_run_created=created.append
    )
    assert isinstance(result, dict) and result["messages"][-1]["content"] == "no thread"
    assert created and created[0]["thread_id"]
    events = [
        part
        async for part in client.runs.stream(
            None, "echo", input=ask("events please"), stream_mode="events"
        )
    ]
    kinds = [p.data["event"] for p in events if p.event == "events"]
    assert kinds[0] == "on_chain_start" and "on_chat_model_stream" in kinds
    assert kinds[-1] == "on_chain_end"


async def test_join_stream_with_the_sdk_resumes_after_last_event_id(
    client: LangGraphClient,
) -> None:
    thread = await client.threads.create()
    run = await client.runs.create(
        thread["thread_id"],
        "echo",
        input=ask(" ".join(f"w{i}" for i in range(30))),
        stream_mode=["messages-tuple"],
    )
    whole = [
        p async for p in client.runs.join_stream(thread["thread_id"], run["run_id"])
    ]  # the run's own stream mode
    assert whole[0].event == "metadata" and {p.event for p in whole[1:]} == {"messages"}
    middle = whole[10]
    rest = [
        p
        async for p in client.runs.join_stream(
            thread["thread_id"], run["run_id"], last_event_id=middle.id
        )
    ]
    assert [(p.event, p.data, p.id) for p in rest] == [(p.event, p.data, p.id) for p in whole[11:]]
    values = [
        p
        async for p in client.runs.join_stream(
            thread["thread_id"], run["run_id"], stream_mode="values"
        )
    ]
    assert values[-1].event == "values"
    assert values[-1].data["messages"][-1]["content"].startswith("w0 w1")


async def test_the_agent_streams_tokens_and_answers_with_citations(client: LangGraphClient) -> None:
    thread = await client.threads.create()
    parts = [
        part
        async for part in client.runs.stream(
            thread["thread_id"],
            "agent",
            input=ask("who knows Rust?"),
            stream_mode=["messages-tuple", "updates", "values"],
        )
    ]
    assert "error" not in {p.event for p in parts}
    nodes = {meta["langgraph_node"] for _, meta in (p.data for p in parts if p.event == "messages")}
    assert nodes == {"supervisor"}
    updated = [next(iter(p.data)) for p in parts if p.event == "updates"]
    assert "supervisor" in updated
    final = [p.data for p in parts if p.event == "values"][-1]
    assert final["messages"][0] == {"role": "user", "content": "who knows Rust?", "type": "human"}
    assert final["messages"][-1]["type"] == "ai" and final["messages"][-1]["content"]


async def test_a_queued_run_starts_although_the_gateway_that_queued_it_died(
    platform: Platform, client: LangGraphClient
) -> None:
    thread = await client.threads.create()
    first = await client.runs.create(thread["thread_id"], "steps", input=steps(5, 0.3))
    second = await client.runs.create(
        thread["thread_id"], "steps", input=steps(6, 0), multitask_strategy="enqueue"
    )
    platform.stop_service("gateway", sig=signal.SIGKILL)
    try:
        # No gateway now: the orchestrator ends the first run, releases the thread and starts
        # the queued one.
        nc = await nats.connect(platform.engines.urls()["nats"])
        sub = await nc.jetstream().subscribe(
            f"agentbus.v1.runs.events.{second['run_id']}",
            ordered_consumer=True,
            deliver_policy=DeliverPolicy.ALL,
        )
        while True:
            event = RunEvent.model_validate_json((await sub.next_msg(timeout=60)).data)
            if event.type == "end":
                assert event.status == "success"
                break
        await nc.close()
    finally:
        platform.start_service("gateway")
        await asyncio.to_thread(platform.wait_ready, 120)
    again = get_client(url=platform.gateway_url, api_key=dev_key(platform))
    for run in (first, second):
        assert (await again.runs.get(thread["thread_id"], run["run_id"]))["status"] == "success"
    assert (await again.threads.get(thread["thread_id"]))["values"]["done"] == list(range(1, 7))
    await again.aclose()


async def test_a_failing_run_streams_an_error_event(client: LangGraphClient) -> None:
    thread = await client.threads.create()
    bad_delay = {"steps": 1, "delay": "slow"}  # the node fails on float("slow")
    parts = [p async for p in client.runs.stream(thread["thread_id"], "steps", input=bad_delay)]
    errors = [p.data for p in parts if p.event == "error"]
    # LangGraph's error body with a reason code: the exception (ValueError: could not convert
    # string to float: 'slow') stays in the orchestrator's log (issue 13, point 11).
    assert errors and errors[0]["error"] == "graph_error" and errors[0]["message"]
    assert "slow" not in errors[0]["message"] and "ValueError" not in str(errors[0])
    run_id = parts[0].data["run_id"]
    assert (await client.runs.get(thread["thread_id"], run_id))["status"] == "error"
    assert (await client.threads.get(thread["thread_id"]))["status"] == "error"
    with pytest.raises(Exception, match="graph_error"):
        await client.runs.wait(thread["thread_id"], "steps", input=bad_delay)
