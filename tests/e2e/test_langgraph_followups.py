"""What the LangGraph API does around a run, with the official `langgraph_sdk`: the webhook
POSTed when a run ends (to a receiver on 127.0.0.1; targets off the operator's allow-list are
refused), delayed runs (`after_seconds`, cancellable before they start), a cron's
`on_run_completed: delete`, and deleting an assistant with its threads."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from langgraph_sdk.client import LangGraphClient
from langgraph_sdk.errors import NotFoundError

pytestmark = pytest.mark.e2e


def ask(text: str) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": text}]}


@dataclass
class Receiver:
    """A webhook receiver on the loopback: each POST's path and JSON body, in order."""

    url: str
    posts: asyncio.Queue[tuple[str, dict[str, Any]]] = field(default_factory=asyncio.Queue)

    async def next(self, path: str, timeout: float = 30.0) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            while True:
                got, body = await self.posts.get()
                if got == path:
                    return body


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    queue: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode()
        method, path, _ = head.split("\r\n", 1)[0].split(" ", 2)
        length = next(
            int(line.split(":", 1)[1])
            for line in head.split("\r\n")
            if line.lower().startswith("content-length:")
        )
        body = await reader.readexactly(length)
        if method == "POST":
            queue.put_nowait((path, json.loads(body)))
        writer.write(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield Receiver(f"http://127.0.0.1:{port}", queue)


async def test_webhook_gets_the_run_and_its_values(
    client: LangGraphClient, receiver: Receiver
) -> None:
    thread = (await client.threads.create())["thread_id"]
    await client.runs.wait(thread, "echo", input=ask("hook me"), webhook=f"{receiver.url}/done?k=1")
    body = await receiver.next("/done?k=1")
    assert body["thread_id"] == thread and body["status"] == "success"
    assert body["error"] is None and body["webhook_sent_at"]
    assert body["values"]["messages"][0]["content"] == "hook me"
    run = await client.runs.get(thread, body["run_id"])
    assert run["assistant_id"] == body["assistant_id"]

    # A streamed stateless run sends its own, once.
    async for _ in client.runs.stream(
        None, "echo", input=ask("streamed"), webhook=f"{receiver.url}/streamed"
    ):
        pass
    streamed = await receiver.next("/streamed")
    assert streamed["values"]["messages"][0]["content"] == "streamed"
    assert streamed["thread_id"] != thread


async def test_webhook_targets_off_the_allow_list_are_refused(
    client: LangGraphClient, http: httpx.AsyncClient
) -> None:
    thread = (await client.threads.create())["thread_id"]
    for url, why in [
        ("http://169.254.169.254/latest/meta-data", "allow-list"),
        ("http://localhost:80/x", "allow-list"),
        ("https://127.0.0.1/x", "allow-list"),  # the list names http only
        ("ftp://127.0.0.1/x", "http(s)"),
        ("http://user:pw@127.0.0.1/x", "credentials"),
    ]:
        response = await http.post(
            f"/threads/{thread}/runs", json={"assistant_id": "echo", "webhook": url}
        )
        assert response.status_code == 422 and why in response.text, (url, response.text)
        cron = await http.post(
            "/runs/crons", json={"assistant_id": "echo", "schedule": "0 9 * * *", "webhook": url}
        )
        assert cron.status_code == 422, (url, cron.text)
    assert await client.runs.list(thread) == []  # nothing was started


async def test_a_delayed_run_starts_later_and_can_be_cancelled_first(
    client: LangGraphClient,
) -> None:
    thread = (await client.threads.create())["thread_id"]
    run = await client.runs.create(thread, "echo", input=ask("later"), after_seconds=1)
    assert run["status"] == "pending"
    assert (await client.threads.get_state(thread))["values"] == {}
    result = await client.runs.join(thread, run["run_id"])
    assert result["messages"][0]["content"] == "later"
    assert (await client.runs.get(thread, run["run_id"]))["status"] == "success"

    # Cancelled while it waits: it never runs, and its end is recorded.
    waiting = await client.runs.create(thread, "echo", input=ask("never"), after_seconds=60)
    await client.runs.cancel(thread, waiting["run_id"])
    assert (await client.runs.get(thread, waiting["run_id"]))["status"] == "interrupted"
    values = (await client.threads.get_state(thread))["values"]
    assert "never" not in [m["content"] for m in values["messages"]]


async def test_bad_delays_are_refused(http: httpx.AsyncClient) -> None:
    for delay in (-1, 86_401, "soon"):
        response = await http.post("/runs", json={"assistant_id": "echo", "after_seconds": delay})
        assert response.status_code == 422, response.text


async def test_a_cron_deletes_the_thread_of_each_tick_after_its_webhook(
    client: LangGraphClient, http: httpx.AsyncClient, receiver: Receiver
) -> None:
    cron = await client.crons.create(
        "echo", schedule="* * * * * */2", input=ask("tick"), webhook=f"{receiver.url}/cron"
    )
    try:
        assert cron["on_run_completed"] == "delete"  # LangGraph's default
        body = await receiver.next("/cron")
        assert body["metadata"]["cron_id"] == cron["cron_id"] and body["status"] == "success"
        for _ in range(100):
            try:
                await client.threads.get(body["thread_id"])
            except NotFoundError:
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("the tick's thread was not deleted")
    finally:
        await client.crons.delete(cron["cron_id"])
    # A thread cron runs on the caller's thread, which is never deleted.
    thread = (await client.threads.create())["thread_id"]
    refused = await http.post(
        f"/threads/{thread}/runs/crons",
        json={"assistant_id": "echo", "schedule": "0 9 * * *", "on_run_completed": "delete"},
    )
    assert refused.status_code == 422 and "thread per run" in refused.text


async def test_deleting_an_assistant_with_its_threads(client: LangGraphClient) -> None:
    mine = await client.assistants.create("echo", name="short-lived")
    other = await client.assistants.create("echo", name="stays")
    own = [(await client.threads.create())["thread_id"] for _ in range(2)]
    for thread in own:
        await client.runs.wait(thread, mine["assistant_id"], input=ask("bye"))
    kept = (await client.threads.create())["thread_id"]
    await client.runs.wait(kept, other["assistant_id"], input=ask("hi"))

    await client.assistants.delete(mine["assistant_id"], delete_threads=True)
    for thread in own:
        with pytest.raises(NotFoundError):
            await client.threads.get(thread)
    assert (await client.threads.get(kept))["metadata"]["assistant_id"] == other["assistant_id"]
    with pytest.raises(NotFoundError):
        await client.assistants.get(mine["assistant_id"])
    await client.assistants.delete(other["assistant_id"])
