"""A2A push notifications with the official `a2a-sdk` client, unmodified, against the real
platform: a config given with the message (v1.0 and, through the SDK's compat transport, v0.3)
brings the completed Task to a receiver on 127.0.0.1 with its token and authentication; the
config methods round trip (create/set, get, list, delete) and a config set on a waiting task
hears of its end; a URL off the operator's allow-list (`AGENTBUS_WEBHOOK_ALLOWED_URLS`, in the
session platform: http://127.0.0.1) and bad bodies get the JSON-RPC errors."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from a2a.client import A2ACardResolver, ClientConfig, ClientFactory
from a2a.types import (
    AgentCard,
    AuthenticationInfo,
    DeleteTaskPushNotificationConfigRequest,
    GetTaskPushNotificationConfigRequest,
    ListTaskPushNotificationConfigsRequest,
    ListTasksRequest,
    Message,
    Part,
    Role,
    SendMessageConfiguration,
    SendMessageRequest,
    StreamResponse,
    TaskPushNotificationConfig,
    TaskState,
)
from a2a.utils.errors import InvalidParamsError, TaskNotFoundError
from google.protobuf import json_format

from agentbus.contracts import new_id
from agentbus.runtime.platform import Platform

pytestmark = pytest.mark.e2e


@dataclass
class Post:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class Receiver:
    """A push receiver on the loopback: each POST's path, headers (lower-cased) and JSON body."""

    url: str
    posts: asyncio.Queue[Post] = field(default_factory=asyncio.Queue)
    seen: list[Post] = field(default_factory=list)

    async def until(self, path: str, state: str, timeout: float = 60.0) -> Post:
        """The first POST to `path` whose task is in `state` (v1.0 or v0.3 spelling)."""
        async with asyncio.timeout(timeout):
            while True:
                post = await self.posts.get()
                self.seen.append(post)
                task = post.body.get("task", post.body)
                if post.path == path and task.get("status", {}).get("state") == state:
                    return post


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    queue: asyncio.Queue[Post] = asyncio.Queue()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode()
        first, *lines = head.strip().split("\r\n")
        method, path, _ = first.split(" ", 2)
        headers = {k.strip().lower(): v.strip() for k, v in (x.split(":", 1) for x in lines)}
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        if method == "POST":
            queue.put_nowait(Post(path, headers, json.loads(body)))
        writer.write(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield Receiver(f"http://127.0.0.1:{port}", queue)


def dev_key(platform: Platform) -> str:
    return (platform.data_dir / "dev-api-key").read_text().strip()


@pytest.fixture
async def http(platform: Platform) -> AsyncIterator[httpx.AsyncClient]:
    headers = {"Authorization": f"Bearer {dev_key(platform)}"}
    async with httpx.AsyncClient(headers=headers, timeout=120) as client:
        yield client


async def card_of(http: httpx.AsyncClient, platform: Platform, version: str) -> AgentCard:
    """The echo agent's card with just its interface of one protocol version."""
    resolver = A2ACardResolver(http, f"{platform.gateway_url}/a2a/echo")
    card = await resolver.get_agent_card()
    assert card.capabilities.push_notifications
    keep = [i for i in card.supported_interfaces if i.protocol_version == version]
    del card.supported_interfaces[:]
    card.supported_interfaces.extend(keep)
    return card


def ask(text: str, context_id: str | None = None) -> SendMessageRequest:
    message = Message(message_id=str(uuid.uuid4()), role=Role.ROLE_USER, parts=[Part(text=text)])
    if context_id:
        message.context_id = context_id
    return SendMessageRequest(message=message)


async def only_reply(client: Any, request: SendMessageRequest) -> StreamResponse:
    [reply] = [r async for r in client.send_message(request)]
    return reply


async def test_send_with_a_push_config_posts_the_completed_task(
    http: httpx.AsyncClient, platform: Platform, receiver: Receiver
) -> None:
    card = await card_of(http, platform, "1.0")
    client = ClientFactory(ClientConfig(httpx_client=http, streaming=False)).create(card)
    request = ask("push me")
    request.configuration.CopyFrom(
        SendMessageConfiguration(
            task_push_notification_config=TaskPushNotificationConfig(
                url=f"{receiver.url}/v1?k=1",
                token="tok-v1",
                authentication=AuthenticationInfo(scheme="Bearer", credentials="receiver-secret"),
            )
        )
    )
    reply = await only_reply(client, request)
    task = reply.task
    assert task.status.state == TaskState.TASK_STATE_COMPLETED
    post = await receiver.until("/v1?k=1", "TASK_STATE_COMPLETED")
    assert post.headers["x-a2a-notification-token"] == "tok-v1"
    assert post.headers["authorization"] == "Bearer receiver-secret"
    assert post.headers["content-type"] == "application/json"
    pushed = json_format.ParseDict(post.body, StreamResponse())  # the spec's payload
    assert pushed.task.id == task.id and pushed.task.context_id == task.context_id
    assert pushed.task.artifacts[0].parts[0].text.strip() == "push me"
    # The config given with the message is the task's, under the task's id.
    listed = await client.list_task_push_notification_configs(
        ListTaskPushNotificationConfigsRequest(task_id=task.id)
    )
    assert [(c.id, c.url, c.token) for c in listed.configs] == [
        (task.id, f"{receiver.url}/v1?k=1", "tok-v1")
    ]
    # Nothing but this task's states came, each at most once per state and in order.
    states = [p.body["task"]["status"]["state"] for p in receiver.seen]
    assert states[-1] == "TASK_STATE_COMPLETED" and states in (
        ["TASK_STATE_COMPLETED"],
        ["TASK_STATE_WORKING", "TASK_STATE_COMPLETED"],
    )


async def test_v03_send_with_a_push_config_posts_the_task(
    http: httpx.AsyncClient, platform: Platform, receiver: Receiver
) -> None:
    card = await card_of(http, platform, "0.3")
    push = TaskPushNotificationConfig(url=f"{receiver.url}/legacy", token="tok-v03")
    config = ClientConfig(httpx_client=http, streaming=False, push_notification_config=push)
    client = ClientFactory(config).create(card)
    reply = await only_reply(client, ask("legacy push"))
    assert reply.task.status.state == TaskState.TASK_STATE_COMPLETED
    post = await receiver.until("/legacy", "completed")
    assert post.body["kind"] == "task" and post.body["id"] == reply.task.id  # v0.3: the Task
    assert post.headers["x-a2a-notification-token"] == "tok-v03"
    assert "authorization" not in post.headers


async def hold_thread(http: httpx.AsyncClient, platform: Platform, context: str) -> str:
    """A long run on the context's thread: a task sent to it waits until it is cancelled."""
    busy = await http.post(
        f"{platform.gateway_url}/threads/{context}/runs",
        json={
            "assistant_id": "steps",
            "input": {"steps": 300, "delay": 1.0},
            "if_not_exists": "create",
        },
    )
    assert busy.status_code == 200, busy.text
    return str(busy.json()["run_id"])


@pytest.mark.parametrize("version", ["1.0", "0.3"])
async def test_config_round_trip_and_a_set_config_hears_the_end(
    http: httpx.AsyncClient, platform: Platform, receiver: Receiver, version: str
) -> None:
    card = await card_of(http, platform, version)
    client = ClientFactory(ClientConfig(httpx_client=http, streaming=False, polling=True)).create(
        card
    )
    context = new_id()
    holder = await hold_thread(http, platform, context)
    waiting = (await only_reply(client, ask(f"waits {version}", context))).task
    assert waiting.status.state == TaskState.TASK_STATE_SUBMITTED

    def config(config_id: str, path: str) -> TaskPushNotificationConfig:
        return TaskPushNotificationConfig(
            task_id=waiting.id,
            id=config_id,
            url=f"{receiver.url}{path}",
            token=f"tok-{config_id}",
            authentication=AuthenticationInfo(scheme="Basic", credentials="dXNlcjpwdw=="),
        )

    made = await client.create_task_push_notification_config(config("keep", "/keep"))
    assert (made.task_id, made.id, made.url) == (waiting.id, "keep", f"{receiver.url}/keep")
    await client.create_task_push_notification_config(config("drop", "/drop"))
    got = await client.get_task_push_notification_config(
        GetTaskPushNotificationConfigRequest(task_id=waiting.id, id="keep")
    )
    assert got.token == "tok-keep" and got.authentication.scheme == "Basic"
    assert got.authentication.credentials == "dXNlcjpwdw=="
    listed = await client.list_task_push_notification_configs(
        ListTaskPushNotificationConfigsRequest(task_id=waiting.id)
    )
    assert [c.id for c in listed.configs] == ["keep", "drop"]
    await client.delete_task_push_notification_config(
        DeleteTaskPushNotificationConfigRequest(task_id=waiting.id, id="drop")
    )
    listed = await client.list_task_push_notification_configs(
        ListTaskPushNotificationConfigsRequest(task_id=waiting.id)
    )
    assert [c.id for c in listed.configs] == ["keep"]
    with pytest.raises(TaskNotFoundError):
        await client.get_task_push_notification_config(
            GetTaskPushNotificationConfigRequest(task_id=waiting.id, id="drop")
        )
    with pytest.raises(TaskNotFoundError):  # a task that is not there (or another tenant's)
        await client.create_task_push_notification_config(
            TaskPushNotificationConfig(task_id=new_id(), url=f"{receiver.url}/x")
        )

    # The thread is let go: the task runs, and the kept config hears that it completed.
    let_go = await http.post(f"{platform.gateway_url}/threads/{context}/runs/{holder}/cancel")
    assert let_go.status_code == 204, let_go.text
    done = "TASK_STATE_COMPLETED" if version == "1.0" else "completed"
    post = await receiver.until("/keep", done)
    assert post.headers["x-a2a-notification-token"] == "tok-keep"
    assert post.headers["authorization"] == "Basic dXNlcjpwdw=="
    assert all(p.path != "/drop" for p in receiver.seen)


async def test_a_url_off_the_allow_list_is_refused(
    http: httpx.AsyncClient, platform: Platform
) -> None:
    card = await card_of(http, platform, "1.0")
    client = ClientFactory(ClientConfig(httpx_client=http, streaming=False)).create(card)
    task = (await only_reply(client, ask("no hooks here"))).task
    for url in ("http://169.254.169.254/latest", "https://127.0.0.1/x", "file:///etc/passwd"):
        with pytest.raises(InvalidParamsError, match="push notification URL refused"):
            await client.create_task_push_notification_config(
                TaskPushNotificationConfig(task_id=task.id, url=url)
            )
    # Given with a message, the refusal comes before any run starts.
    context = new_id()
    request = ask("never run", context)
    request.configuration.task_push_notification_config.url = "http://10.0.0.1/hook"
    with pytest.raises(InvalidParamsError, match="not on the allow-list"):
        await only_reply(client, request)
    assert (await client.list_tasks(ListTasksRequest(context_id=context))).total_size == 0


async def test_bad_push_bodies_get_json_rpc_errors(
    http: httpx.AsyncClient, platform: Platform, receiver: Receiver
) -> None:
    url = f"{platform.gateway_url}/a2a/echo"
    sent = await http.post(
        url,
        json={
            "jsonrpc": "2.0",
            "id": 1,
            "method": "SendMessage",
            "params": {"message": {"role": "ROLE_USER", "parts": [{"text": "x"}]}},
        },
    )
    task_id = sent.json()["result"]["task"]["id"]

    async def code(method: str, params: object) -> int:
        body = {"jsonrpc": "2.0", "id": 9, "method": method, "params": params}
        response = await http.post(url, json=body)
        assert response.status_code == 200, response.text
        error: dict[str, Any] = response.json()["error"]
        assert error["message"]
        return int(error["code"])

    hook = f"{receiver.url}/h"
    create = "CreateTaskPushNotificationConfig"
    assert await code(create, {"taskId": task_id}) == -32602  # no url
    assert await code(create, {"taskId": task_id, "url": 5}) == -32602
    assert await code(create, {"url": hook}) == -32602  # no task
    assert await code(create, [task_id, hook]) == -32602
    bad_token = {"taskId": task_id, "url": hook, "token": "a\r\nX-Injected: 1"}
    assert await code(create, bad_token) == -32602
    bad_auth = {"taskId": task_id, "url": hook, "authentication": {"scheme": "Be arer"}}
    assert await code(create, bad_auth) == -32602
    assert await code(create, {"taskId": "missing", "url": hook}) == -32001
    assert await code("DeleteTaskPushNotificationConfig", {"taskId": task_id}) == -32602
    assert await code("GetTaskPushNotificationConfig", {"taskId": task_id, "id": "nope"}) == -32001
    assert await code("ListTaskPushNotificationConfigs", {"taskId": task_id, "pageSize": 500}) == (
        -32602
    )
    # v0.3 nests the config: a flat one is a bad body there.
    assert await code("tasks/pushNotificationConfig/set", {"taskId": task_id, "url": hook}) == (
        -32602
    )
    assert await code("tasks/pushNotificationConfig/list", {"taskId": task_id}) == -32602
    # At most ten configs per task.
    for i in range(10):
        ok = await http.post(
            url,
            json={
                "jsonrpc": "2.0",
                "id": i,
                "method": create,
                "params": {"taskId": task_id, "id": f"c{i}", "url": hook},
            },
        )
        assert "result" in ok.json(), ok.text
    assert await code(create, {"taskId": task_id, "id": "c10", "url": hook}) == -32602
