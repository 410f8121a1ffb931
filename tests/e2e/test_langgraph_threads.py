"""Threads and runs beyond create/stream/wait, with the official `langgraph_sdk`: update_state
as a node, state at a checkpoint, copy, count, prune, run from a checkpoint (Agent Chat UI's
regenerate), breakpoints (interrupt_before/after), deleting runs, bulk cancel, batches and
joining a thread's stream."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from langgraph_sdk.client import LangGraphClient
from langgraph_sdk.errors import ConflictError, NotFoundError, UnprocessableEntityError

pytestmark = pytest.mark.e2e


def ask(text: str) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": text}]}


async def wait_status(client: LangGraphClient, thread: str, run: str, wanted: set[str]) -> str:
    for _ in range(1200):
        status = str((await client.runs.get(thread, run))["status"])
        if status in wanted:
            return status
        await asyncio.sleep(0.1)
    raise AssertionError(f"run {run} stayed {status}")


async def test_update_state_as_a_node_and_read_it_back(client: LangGraphClient) -> None:
    thread = (await client.threads.create())["thread_id"]
    # Paused in review (the graph's interrupt()); the human answers by writing the state as
    # the review node would have, instead of resuming.
    await client.runs.wait(thread, "notes", input=ask("approve the slides"))
    assert (await client.threads.get_state(thread))["next"] == ["review"]
    written = await client.threads.update_state(
        thread,
        {"approved": "by hand", "messages": [{"type": "ai", "content": "approved by hand"}]},
        as_node="review",
    )
    checkpoint_id = written["checkpoint"]["checkpoint_id"]
    state = await client.threads.get_state(thread)
    assert state["checkpoint"]["checkpoint_id"] == checkpoint_id
    assert state["next"] == [] and state["values"]["approved"] == "by hand"
    assert state["values"]["messages"][-1]["content"] == "approved by hand"
    assert state["metadata"]["source"] == "update"
    # The same state, asked by checkpoint (GET and POST .../state/checkpoint).
    at = await client.threads.get_state(thread, checkpoint={"checkpoint_id": checkpoint_id})
    assert at["values"] == state["values"]
    with pytest.raises(httpx.HTTPStatusError) as err:  # a node the graph does not have
        await client.threads.update_state(thread, {"approved": "x"}, as_node="nowhere")
    assert err.value.response.status_code == 400
    fresh = (await client.threads.create())["thread_id"]
    with pytest.raises(ConflictError):  # no run yet: no graph to write as
        await client.threads.update_state(fresh, {"approved": "x"})


async def test_regenerate_from_a_checkpoint(client: LangGraphClient) -> None:
    thread = (await client.threads.create())["thread_id"]
    await client.runs.wait(thread, "notes", input=ask("first question"))
    await client.runs.wait(thread, "notes", input=ask("second question"))
    history = await client.threads.get_history(thread, limit=20)
    # Agent Chat UI's regenerate: run again from the checkpoint before the last answer.
    before_reply = next(
        h
        for h in history
        if h["next"] == ["reply"] and h["values"]["messages"][-1]["content"] == "second question"
    )
    parts = [
        p
        async for p in client.runs.stream(
            thread,
            "notes",
            input=None,
            checkpoint=before_reply["checkpoint"],
            stream_mode="values",
        )
    ]
    final = [p.data for p in parts if p.event == "values"][-1]
    contents = [m["content"] for m in final["messages"]]
    assert contents[:3] == ["first question", contents[1], "second question"]
    assert len(contents) == 4 and contents[3].startswith("You said: second question")
    # A fork: the new head's parent is the checkpoint we ran from.
    state = await client.threads.get_state(thread)
    assert state["values"]["messages"][-1]["content"] == contents[3]
    assert len(await client.threads.get_history(thread, limit=100)) > len(history)


async def test_breakpoints_pause_before_and_after_nodes(client: LangGraphClient) -> None:
    thread = (await client.threads.create())["thread_id"]
    result = await client.runs.wait(
        thread, "notes", input=ask("plain note"), interrupt_before=["reply"]
    )
    assert isinstance(result, dict) and len(result["messages"]) == 1
    state = await client.threads.get_state(thread)
    assert state["next"] == ["reply"]
    assert (await client.threads.get(thread))["status"] == "interrupted"
    # Continue with no input: it runs on from the breakpoint.
    done = await client.runs.wait(thread, "notes", input=None, checkpoint_id=None)
    assert isinstance(done, dict)
    assert done["messages"][-1]["content"].startswith("You said: plain note")

    other = (await client.threads.create())["thread_id"]
    await client.runs.wait(other, "notes", input=ask("note two"), interrupt_after=["remember"])
    assert (await client.threads.get_state(other))["next"] == ["reply"]
    echo = (await client.threads.create())["thread_id"]
    await client.runs.wait(echo, "echo", input=ask("x"), interrupt_before="*")
    assert (await client.threads.get_state(echo))["next"] == ["echo"]


async def test_copy_count_and_prune_threads(client: LangGraphClient) -> None:
    tag = f"copy{id(client)}"
    thread = (await client.threads.create(metadata={"tag": tag}))["thread_id"]
    await client.runs.wait(thread, "notes", input=ask("to be copied"))
    copied = await client.threads.copy(thread)
    assert copied["thread_id"] != thread and copied["metadata"]["tag"] == tag
    assert copied["values"] == (await client.threads.get(thread))["values"]
    history = await client.threads.get_history(copied["thread_id"], limit=50)
    assert len(history) == len(await client.threads.get_history(thread, limit=50))
    # The copy goes on by itself.
    await client.runs.wait(copied["thread_id"], "notes", input=ask("only in the copy"))
    assert len((await client.threads.get_state(thread))["values"]["messages"]) == 2
    assert len((await client.threads.get_state(copied["thread_id"]))["values"]["messages"]) == 4

    assert await client.threads.count(metadata={"tag": tag}) == 2
    assert await client.threads.count(metadata={"tag": tag}, status="idle") == 2
    with pytest.raises(UnprocessableEntityError):
        await client.threads.count(values={"a": 1})

    pruned = await client.threads.prune([thread], strategy="keep_latest")
    assert pruned == {"pruned_count": 1}
    assert len(await client.threads.get_history(thread, limit=50)) == 1
    assert (await client.threads.get_state(thread))["values"]["messages"][0]["content"] == (
        "to be copied"
    )
    gone = await client.threads.prune([copied["thread_id"], "not-mine-or-missing"])
    assert gone == {"pruned_count": 1}
    with pytest.raises(NotFoundError):
        await client.threads.get(copied["thread_id"])
    assert await client.threads.count(metadata={"tag": tag}) == 1


async def test_delete_bulk_cancel_batch_and_join_a_thread(
    client: LangGraphClient, http: httpx.AsyncClient
) -> None:
    thread = (await client.threads.create())["thread_id"]
    slow = await client.runs.create(thread, "steps", input={"steps": 30, "delay": 0.2})
    await wait_status(client, thread, slow["run_id"], {"running"})
    with pytest.raises(ConflictError):
        await client.runs.delete(thread, slow["run_id"])
    # Join the thread's stream: its active run, from the start.
    joined: list[str] = []
    async for part in await client.threads.join_stream(thread):
        joined.append(part.event)
        if len(joined) >= 2:
            break
    assert joined[0] in ("values", "metadata")

    await client.runs.cancel_many(thread_id=thread)
    assert await wait_status(client, thread, slow["run_id"], {"interrupted"}) == "interrupted"
    await client.runs.delete(thread, slow["run_id"])
    with pytest.raises(NotFoundError):
        await client.runs.get(thread, slow["run_id"])

    other = (await client.threads.create())["thread_id"]
    run = await client.runs.create(other, "steps", input={"steps": 30, "delay": 0.2})
    await wait_status(client, other, run["run_id"], {"running"})
    await client.runs.cancel_many(run_ids=[run["run_id"]], action="interrupt")
    assert await wait_status(client, other, run["run_id"], {"interrupted"}) == "interrupted"
    bad = await http.post("/runs/cancel", json={})
    assert bad.status_code == 422 and "thread_id, run_ids or status" in bad.text
    missing = await http.post("/runs/cancel", json={"run_ids": ["nope"]})
    assert missing.status_code == 404

    batch = await client.runs.create_batch(
        [
            {"assistant_id": "echo", "input": ask("one")},
            {"assistant_id": "notes", "input": ask("two")},
        ]
    )
    assert len(batch) == 2 and batch[0]["thread_id"] != batch[1]["thread_id"]
    for created in batch:
        status = await wait_status(client, created["thread_id"], created["run_id"], {"success"})
        assert status == "success"
    refused = await http.post(
        "/runs/batch", json=[{"assistant_id": "echo"}, {"assistant_id": "nobody"}]
    )
    assert refused.status_code == 404
    assert (await http.post("/runs/batch", json=[])).status_code == 422


async def test_stream_subgraphs_names_parts_by_namespace(client: LangGraphClient) -> None:
    parts = [
        p
        async for p in client.runs.stream(
            None,
            "nested",
            input={"text": "hello"},
            stream_mode=["values", "updates"],
            stream_subgraphs=True,
        )
    ]
    names = [p.event for p in parts]
    sub_values = [p for p in parts if p.event.startswith("values|inner:")]
    sub_updates = [p for p in parts if p.event.startswith("updates|inner:")]
    assert sub_values and sub_updates, names
    assert [list(p.data) for p in sub_updates] == [["shout"], ["mark"]]
    assert sub_values[-1].data == {"text": "HELLO!", "steps": ["shout", "mark"]}
    root = [p.data for p in parts if p.event == "values"]
    assert root[-1] == {"text": "HELLO!", "steps": ["shout", "mark"]}
    # Without stream_subgraphs only the root graph streams.
    plain = [
        p.event
        async for p in client.runs.stream(
            None, "nested", input={"text": "hi"}, stream_mode=["values", "updates"]
        )
    ]
    assert not [n for n in plain if "|" in n]
    # And the subgraph is described as LangGraph describes it.
    subgraphs = await client.assistants.get_subgraphs("nested")
    assert list(subgraphs) == ["inner"]
    assert set(subgraphs["inner"]["state_schema"]["properties"]) == {"text", "steps"}
