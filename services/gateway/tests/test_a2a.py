"""A2A with the official `a2a-sdk` client, unmodified, against the real platform: the agent card,
SendMessage streamed and not (v1.0), GetTask, CancelTask, ListTasks, SubscribeToTask (and v0.3's
tasks/resubscribe), the v0.3 method names through the SDK's v0.3 compat transport, contextId as
the thread, and JSON-RPC errors."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from a2a.client import A2ACardResolver, ClientConfig, ClientFactory
from a2a.types import (
    AgentCard,
    CancelTaskRequest,
    GetTaskRequest,
    ListTasksRequest,
    Message,
    Part,
    Role,
    SendMessageRequest,
    StreamResponse,
    SubscribeToTaskRequest,
    Task,
    TaskState,
)

from agentbus.contracts import new_id
from agentbus.runtime.platform import Platform

pytestmark = pytest.mark.e2e


def dev_key(platform: Platform) -> str:
    return (platform.data_dir / "dev-api-key").read_text().strip()


@pytest.fixture
async def http(platform: Platform) -> AsyncIterator[httpx.AsyncClient]:
    headers = {"Authorization": f"Bearer {dev_key(platform)}"}
    async with httpx.AsyncClient(headers=headers, timeout=120) as client:
        yield client


async def card_of(http: httpx.AsyncClient, platform: Platform, assistant: str) -> AgentCard:
    resolver = A2ACardResolver(http, f"{platform.gateway_url}/a2a/{assistant}")
    return await resolver.get_agent_card()


def ask(text: str, context_id: str | None = None) -> SendMessageRequest:
    message = Message(message_id=str(uuid.uuid4()), role=Role.ROLE_USER, parts=[Part(text=text)])
    if context_id:
        message.context_id = context_id
    return SendMessageRequest(message=message)


def only(card: AgentCard, version: str) -> AgentCard:
    """The card with just its interface of one protocol version (to pick the SDK's transport)."""
    picked = AgentCard()
    picked.CopyFrom(card)
    keep = [i for i in card.supported_interfaces if i.protocol_version == version]
    del picked.supported_interfaces[:]
    picked.supported_interfaces.extend(keep)
    return picked


async def collect(client: object, request: SendMessageRequest) -> list[StreamResponse]:
    return [r async for r in client.send_message(request)]  # type: ignore[attr-defined]


async def test_agent_cards(http: httpx.AsyncClient, platform: Platform) -> None:
    card = await card_of(http, platform, "echo")
    assert card.capabilities.streaming
    versions = {i.protocol_version for i in card.supported_interfaces}
    assert versions == {"1.0", "0.3"}
    assert all(i.url.endswith("/a2a/echo") for i in card.supported_interfaces)
    assert card.skills[0].id == "echo"
    root = await A2ACardResolver(http, platform.gateway_url).get_agent_card()
    assert root.skills[0].id == "agent"
    anonymous = await httpx.AsyncClient().get(
        f"{platform.gateway_url}/a2a/nope/.well-known/agent-card.json"
    )
    assert anonymous.status_code == 404


async def test_v1_stream_then_send_on_one_context(
    http: httpx.AsyncClient, platform: Platform
) -> None:
    card = only(await card_of(http, platform, "echo"), "1.0")
    streaming = ClientFactory(ClientConfig(httpx_client=http, streaming=True)).create(card)
    context = new_id()
    events = await collect(streaming, ask("hello over a2a", context))
    assert events[0].HasField("task")
    task_id = events[0].task.id
    assert events[0].task.context_id == context
    chunks = [e.artifact_update for e in events if e.HasField("artifact_update")]
    assert "".join(p.text for c in chunks for p in c.artifact.parts).strip() == "hello over a2a"
    assert chunks[-1].last_chunk and not chunks[0].append and all(c.append for c in chunks[1:])
    states = [e.status_update.status.state for e in events if e.HasField("status_update")]
    assert states[0] == TaskState.TASK_STATE_WORKING
    assert states[-1] == TaskState.TASK_STATE_COMPLETED

    blocking = ClientFactory(ClientConfig(httpx_client=http, streaming=False)).create(card)
    [reply] = await collect(blocking, ask("second message", context))
    task: Task = reply.task
    assert task.status.state == TaskState.TASK_STATE_COMPLETED and task.context_id == context
    assert task.artifacts[0].parts[0].text == "second message"

    got = await blocking.get_task(GetTaskRequest(id=task_id))
    assert got.status.state == TaskState.TASK_STATE_COMPLETED and got.id == task_id
    messages = (await http.get(f"{platform.gateway_url}/api/v1/threads/{context}/messages")).json()
    assert [m["content"] for m in messages["messages"]] == [
        "hello over a2a",
        "hello over a2a",
        "second message",
        "second message",
    ]


async def test_cancel_a_waiting_task(http: httpx.AsyncClient, platform: Platform) -> None:
    # A slow run holds the context's thread, so the task waits its turn and can be cancelled.
    context = new_id()
    busy = await http.post(
        f"{platform.gateway_url}/threads/{context}/runs",
        json={
            "assistant_id": "steps",
            "input": {"steps": 5, "delay": 1.0},
            "if_not_exists": "create",
        },
    )
    assert busy.status_code == 200, busy.text
    card = only(await card_of(http, platform, "echo"), "1.0")
    client = ClientFactory(ClientConfig(httpx_client=http, streaming=False, polling=True)).create(
        card
    )
    [reply] = await collect(client, ask("never answered", context))
    assert reply.task.status.state == TaskState.TASK_STATE_SUBMITTED
    cancelled = await client.cancel_task(CancelTaskRequest(id=reply.task.id))
    assert cancelled.status.state == TaskState.TASK_STATE_CANCELED
    again = await client.get_task(GetTaskRequest(id=reply.task.id))
    assert again.status.state == TaskState.TASK_STATE_CANCELED


async def hold_thread(http: httpx.AsyncClient, platform: Platform, context: str) -> None:
    """A slow run on the context's thread: tasks sent to it wait their turn."""
    busy = await http.post(
        f"{platform.gateway_url}/threads/{context}/runs",
        json={
            "assistant_id": "steps",
            "input": {"steps": 3, "delay": 0.5},
            "if_not_exists": "create",
        },
    )
    assert busy.status_code == 200, busy.text


async def test_subscribe_to_a_waiting_task_v1_and_v03(
    http: httpx.AsyncClient, platform: Platform
) -> None:
    for version, text in (("1.0", "subscribed"), ("0.3", "resubscribed")):
        context = new_id()
        await hold_thread(http, platform, context)
        card = only(await card_of(http, platform, "echo"), version)
        sender = ClientFactory(ClientConfig(httpx_client=http, streaming=False, polling=True))
        [reply] = await collect(sender.create(card), ask(text, context))
        waiting = reply.task
        assert waiting.status.state == TaskState.TASK_STATE_SUBMITTED
        streaming = ClientFactory(ClientConfig(httpx_client=http, streaming=True)).create(card)
        events = [e async for e in streaming.subscribe(SubscribeToTaskRequest(id=waiting.id))]
        chunks = [e.artifact_update for e in events if e.HasField("artifact_update")]
        assert "".join(p.text for c in chunks for p in c.artifact.parts).strip() == text
        assert events[-1].status_update.status.state == TaskState.TASK_STATE_COMPLETED
        assert all(
            e.status_update.task_id == waiting.id for e in events[1:] if e.HasField("status_update")
        )
        # An ended task has nothing to stream.
        refused = await http.post(
            f"{platform.gateway_url}/a2a/echo",
            json={
                "jsonrpc": "2.0",
                "id": 1,
                "method": "SubscribeToTask",
                "params": {"id": waiting.id},
            },
        )
        assert refused.json()["error"]["code"] == -32004


async def test_list_tasks_of_a_context_by_page_and_state(
    http: httpx.AsyncClient, platform: Platform
) -> None:
    card = only(await card_of(http, platform, "echo"), "1.0")
    client = ClientFactory(ClientConfig(httpx_client=http, streaming=False)).create(card)
    context = new_id()
    sent = [(await collect(client, ask(f"item {i}", context)))[0].task.id for i in range(3)]
    listed = await client.list_tasks(ListTasksRequest(context_id=context))
    assert [t.id for t in listed.tasks] == sent[::-1] and listed.total_size == 3
    assert all(t.status.state == TaskState.TASK_STATE_COMPLETED for t in listed.tasks)
    assert listed.tasks[0].artifacts[0].parts[0].text == "item 2"
    first = await client.list_tasks(ListTasksRequest(context_id=context, page_size=2))
    assert len(first.tasks) == 2 and first.next_page_token
    rest = await client.list_tasks(
        ListTasksRequest(context_id=context, page_size=2, page_token=first.next_page_token)
    )
    assert [t.id for t in [*first.tasks, *rest.tasks]] == sent[::-1] and not rest.next_page_token
    done = await client.list_tasks(
        ListTasksRequest(context_id=context, status=TaskState.TASK_STATE_COMPLETED)
    )
    assert done.total_size == 3
    failed = await client.list_tasks(
        ListTasksRequest(context_id=context, status=TaskState.TASK_STATE_FAILED)
    )
    assert failed.total_size == 0 and not failed.tasks
    # Other assistants' runs on the same thread are not this agent's tasks.
    other = await http.post(
        f"{platform.gateway_url}/a2a/agent",
        json={"jsonrpc": "2.0", "id": 1, "method": "ListTasks", "params": {"contextId": context}},
    )
    assert other.json()["result"]["tasks"] == []
    for params in ({"pageSize": 0}, {"pageSize": 101}, {"status": "DONE"}, {"pageToken": "x"}):
        bad = await http.post(
            f"{platform.gateway_url}/a2a/echo",
            json={"jsonrpc": "2.0", "id": 2, "method": "ListTasks", "params": params},
        )
        assert bad.json()["error"]["code"] == -32602, params


async def test_v03_method_names_through_the_compat_transport(
    http: httpx.AsyncClient, platform: Platform
) -> None:
    card = only(await card_of(http, platform, "echo"), "0.3")
    for streaming in (False, True):
        client = ClientFactory(ClientConfig(httpx_client=http, streaming=streaming)).create(card)
        events = await collect(client, ask(f"legacy {streaming}"))
        last = events[-1]
        if streaming:
            assert last.status_update.status.state == TaskState.TASK_STATE_COMPLETED
            chunks = [e.artifact_update for e in events if e.HasField("artifact_update")]
            text = "".join(p.text for c in chunks for p in c.artifact.parts)
        else:
            assert last.task.status.state == TaskState.TASK_STATE_COMPLETED
            text = last.task.artifacts[0].parts[0].text
        assert text.strip() == f"legacy {streaming}"


async def test_json_rpc_errors(http: httpx.AsyncClient, platform: Platform) -> None:
    url = f"{platform.gateway_url}/a2a/echo"

    async def call(method: str, params: object) -> dict[str, object]:
        body = {"jsonrpc": "2.0", "id": 7, "method": method, "params": params}
        response = await http.post(url, json=body)
        assert response.status_code == 200
        error: dict[str, object] = response.json()["error"]
        return error

    assert (await call("Nope", {}))["code"] == -32601
    assert (await call("SendMessage", {"message": {"parts": []}}))["code"] == -32602
    assert (await call("tasks/get", {"id": "missing"}))["code"] == -32001
    bad_context = {"message": {"parts": [{"text": "hi"}], "contextId": "a/b"}}
    assert (await call("SendMessage", bad_context))["code"] == -32602
    not_json = await http.post(url, content=b"{", headers={"content-type": "application/json"})
    assert not_json.json()["error"]["code"] == -32700
    async with httpx.AsyncClient() as anonymous:
        denied = await anonymous.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "GetTask"})
    assert denied.status_code == 401
