"""A2A JSON-RPC at `POST /a2a/{assistant_id}` and the agent cards.

A task is a run (task id = run id), a context is a thread (`contextId` = thread id, created on
first use; a new one when the message has none). `ListTasks` pages through the assistant's runs
in the caller's tenant, newest first; `SubscribeToTask` / `tasks/resubscribe` streams a task
that has not ended (from its first event: the artifact arrives whole). `SendMessage` /
`message/send` waits for the run's end unless `returnImmediately` (v1.0) or `blocking: false`
(v0.3); the streaming method sends the task, then status and artifact updates as the run's
tokens arrive. Runs go through the same turn path as every other API; a dropped stream loses
no run (`GetTask` has its outcome). The push notification config methods and a config sent
with the message are stored and delivered by `push.py`.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.responses import JSONResponse

from .. import __version__
from ..auth.deps import CurrentPrincipal, Principal
from ..langgraph.routes import service_of
from ..ratelimit import per_tenant
from ..sse import HEARTBEAT, sse_response
from ..turns import (
    assistant_or_404,
    assistants,
    follow,
    runs_of,
    start_turn,
    store_of,
)
from .push import push_of
from .tasks import apply, task_of_row
from .wire import (
    INVALID_PARAMS,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    PARSE_ERROR,
    TASK_NOT_CANCELABLE,
    TASK_NOT_FOUND,
    TERMINAL,
    UNSUPPORTED_OPERATION,
    V03_METHODS,
    V1_METHODS,
    Encoder,
    Incoming,
    ListQuery,
    RpcError,
    TaskView,
    Version,
    error,
    parse_list,
    parse_push_ref,
    parse_push_set,
    parse_send,
    result,
    task_id_of,
)

router = APIRouter(tags=["a2a"])
Auth = CurrentPrincipal
CARD_TENANT = "public"
CONTEXT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$")


async def card(request: Request, assistant_id: str) -> dict[str, Any]:
    """The card of an assistant; 404 when no orchestrator serves it. Cards are public: the
    graph list is the same for every tenant, so it is asked as CARD_TENANT."""
    served = await assistants(request, CARD_TENANT)
    if assistant_id not in served:
        raise HTTPException(404, f"Assistant {assistant_id!r} not found")
    url = f"{str(request.base_url).rstrip('/')}/a2a/{assistant_id}"
    description = served[assistant_id]
    return {
        "name": f"agentbus {assistant_id}",
        "description": description,
        "version": __version__,
        "supportedInterfaces": [
            {"url": url, "protocolBinding": "JSONRPC", "protocolVersion": "1.0"},
            {"url": url, "protocolBinding": "JSONRPC", "protocolVersion": "0.3"},
        ],
        # v0.3 readers take these; v1.0 readers use supportedInterfaces.
        "url": url,
        "preferredTransport": "JSONRPC",
        "protocolVersion": "0.3.0",
        "capabilities": {"streaming": True, "pushNotifications": True},
        "defaultInputModes": ["text/plain"],
        "defaultOutputModes": ["text/plain", "application/json"],
        "securitySchemes": {
            "bearer": {
                "httpAuthSecurityScheme": {
                    "scheme": "Bearer",
                    "description": "An agentbus API key (ab_...) or access token",
                }
            }
        },
        "securityRequirements": [{"schemes": {"bearer": {"list": []}}}],
        "skills": [
            {
                "id": assistant_id,
                "name": assistant_id,
                "description": description,
                "tags": ["agentbus"],
            }
        ],
    }


@router.get("/.well-known/agent-card.json", summary="A2A agent card of the default assistant")
async def root_card(request: Request) -> dict[str, Any]:
    return await card(request, "agent")


@router.get("/a2a/{assistant_id}/.well-known/agent-card.json", summary="A2A agent card")
async def assistant_card(assistant_id: str, request: Request) -> dict[str, Any]:
    return await card(request, assistant_id)


async def _start(
    request: Request,
    principal: Principal,
    assistant_id: str,
    incoming: Incoming,
    version: Version,
) -> TaskView:
    if incoming.task_id is not None:
        raise RpcError(
            UNSUPPORTED_OPERATION,
            "Continuing a task is not supported; send a new message with the task's contextId",
        )
    if incoming.context_id is not None and not CONTEXT_ID.match(incoming.context_id):
        raise RpcError(INVALID_PARAMS, "contextId must be 1-128 of A-Z a-z 0-9 _ -")
    if incoming.push is not None:
        push_of(request).check(incoming.push.url)  # refused before any run starts
    turn = await start_turn(
        request,
        principal,
        messages=[{"role": "user", "content": incoming.text}],
        thread_id=incoming.context_id,
        assistant_id=assistant_id,
        title=incoming.text[:80],
        metadata={"api": "a2a"},
    )
    if incoming.push is not None:
        push = replace(incoming.push, task_id=turn.run_id)
        await push_of(request).put(principal.tenant_id, push, version, "submitted")
    return TaskView(turn.run_id, turn.thread_id, assistant_id)


async def _finish(request: Request, principal: Principal, task: TaskView) -> TaskView:
    async for event in await follow(runs_of(request), principal.tenant_id, task.id):
        if event is not None:
            apply(task, event)
    return task


async def _task(
    request: Request, principal: Principal, assistant_id: str, task_id: str
) -> TaskView:
    row = await store_of(request).run(principal.tenant_id, task_id)
    if row is None or row["assistant_id"] != assistant_id:
        raise RpcError(TASK_NOT_FOUND, f"Task {task_id} not found")
    return await _task_of(request, principal, row)


async def _task_of(request: Request, principal: Principal, row: dict[str, Any]) -> TaskView:
    return await task_of_row(runs_of(request), principal.tenant_id, row)


async def _list(
    request: Request, principal: Principal, assistant_id: str, query: ListQuery, enc: Encoder
) -> dict[str, Any]:
    """A page of the assistant's tasks. With a status, the states of (at most) the newest 1000
    are read, since a run's state lives in its events, not in a column."""
    pool = store_of(request).pool
    where = (
        " FROM runs WHERE tenant_id = $1 AND assistant_id = $2"
        " AND ($3::text IS NULL OR thread_id = $3)"
    )
    args = [principal.tenant_id, assistant_id, query.context_id]
    if query.state is None:
        total = int(await pool.fetchval("SELECT count(*)" + where, *args) or 0)
        rows = await pool.fetch(
            "SELECT *" + where + " ORDER BY created_at DESC, run_id LIMIT $4 OFFSET $5",
            *args,
            query.page_size,
            query.offset,
        )
        tasks = [await _task_of(request, principal, dict(r)) for r in rows]
    else:
        rows = await pool.fetch(
            "SELECT *" + where + " ORDER BY created_at DESC, run_id LIMIT 1000", *args
        )
        every = [await _task_of(request, principal, dict(r)) for r in rows]
        matching = [t for t in every if t.state == query.state]
        total = len(matching)
        tasks = matching[query.offset : query.offset + query.page_size]
    following = query.offset + len(tasks)
    return {
        "tasks": [enc.task(t) for t in tasks],
        "nextPageToken": str(following) if following < total else "",
        "pageSize": query.page_size,
        "totalSize": total,
    }


async def _stream(
    request: Request, principal: Principal, task: TaskView, enc: Encoder, rpc_id: Any
) -> AsyncIterator[bytes]:
    def frame(value: dict[str, Any]) -> bytes:
        return b"data: " + json.dumps(result(rpc_id, value), default=str).encode() + b"\n\n"

    events = await follow(runs_of(request), principal.tenant_id, task.id)

    async def body() -> AsyncIterator[bytes]:
        yield frame(enc.stream_task(task))
        streamed = False
        async for event in events:
            if event is None:
                yield HEARTBEAT
                continue
            was = task.state
            apply(task, event)
            if event.type == "end":
                break
            if task.state != was:
                yield frame(enc.status_update(task))
            if event.type == "token":
                part = enc.text_part(str(event.data.get("text", "")))
                yield frame(enc.artifact_update(task, [part], append=streamed, last=False))
                streamed = True
        # The artifact's last chunk: the answer when no token came, and the citations.
        parts = [] if streamed else enc.answer_parts(task)[:1]
        if task.citations:
            parts.append(enc.data_part({"citations": task.citations}))
        if parts or streamed:
            parts = parts or [enc.text_part("")]  # the close of a streamed answer
            yield frame(enc.artifact_update(task, parts, append=streamed, last=True))
        yield frame(enc.status_update(task))

    return body()


async def _push(
    request: Request,
    principal: Principal,
    assistant_id: str,
    action: str,
    params: Any,
    enc: Encoder,
) -> Any:
    """The push notification config methods of a task of this assistant in the caller's
    tenant."""
    pushes, tenant = push_of(request), principal.tenant_id
    if action == "push_set":
        config = parse_push_set(params, enc.version)
        task = await _task(request, principal, assistant_id, config.task_id)
        return enc.push_config(await pushes.put(tenant, config, enc.version, task.state))
    ref = parse_push_ref(params, enc.version, action)
    await _task(request, principal, assistant_id, ref.task_id)
    if action == "push_list":
        configs, total = await pushes.list(tenant, ref.task_id, ref.page_size, ref.offset)
        listed = [enc.push_config(c) for c in configs]
        if not enc.v1:
            return listed
        following = ref.offset + len(configs)
        return {"configs": listed, "nextPageToken": str(following) if following < total else ""}
    if action == "push_delete":
        assert ref.config_id is not None  # parse_push_ref requires it
        await pushes.delete(tenant, ref.task_id, ref.config_id)
        return None
    found = await pushes.get(tenant, ref.task_id, ref.config_id)
    if found is None:
        raise RpcError(
            TASK_NOT_FOUND, f"Task {ref.task_id} has no push notification config {ref.config_id!r}"
        )
    return enc.push_config(found)


@router.post("/a2a/{assistant_id}", summary="A2A JSON-RPC (v1.0 and v0.3 method names)")
async def rpc(assistant_id: str, request: Request, principal: Auth) -> Response:
    await assistant_or_404(request, principal.tenant_id, assistant_id)
    try:
        payload = json.loads(await request.body())
    except ValueError:
        return JSONResponse(error(None, PARSE_ERROR, "The body is not JSON"))
    if not isinstance(payload, dict) or payload.get("jsonrpc") != "2.0":
        return JSONResponse(error(None, INVALID_REQUEST, "Not a JSON-RPC 2.0 request"))
    rpc_id, method, params = payload.get("id"), payload.get("method"), payload.get("params")
    if method in V1_METHODS:
        action, enc = V1_METHODS[method], Encoder("1.0")
    elif method in V03_METHODS:
        action, enc = V03_METHODS[method], Encoder("0.3")
    else:
        return JSONResponse(error(rpc_id, METHOD_NOT_FOUND, f"Method {method!r} not supported"))
    streaming = action in ("stream", "subscribe")
    await per_tenant("stream" if streaming else "chat")(request, principal)
    try:
        if action.startswith("push_"):
            value = await _push(request, principal, assistant_id, action, params, enc)
            return JSONResponse(result(rpc_id, value))
        if action == "list":
            listed = await _list(request, principal, assistant_id, parse_list(params), enc)
            return JSONResponse(result(rpc_id, listed))
        if action == "subscribe":
            task = await _task(request, principal, assistant_id, task_id_of(params))
            if task.state in TERMINAL:
                raise RpcError(
                    UNSUPPORTED_OPERATION, f"Task {task.id} is {task.state}: nothing to stream"
                )
            return sse_response(
                runs_of(request).streams.track(
                    "a2a", await _stream(request, principal, task, enc, rpc_id)
                )
            )
        if action == "stream":
            task = await _start(request, principal, assistant_id, parse_send(params), enc.version)
            return sse_response(
                runs_of(request).streams.track(
                    "a2a", await _stream(request, principal, task, enc, rpc_id)
                )
            )
        if action == "send":
            incoming = parse_send(params)
            task = await _start(request, principal, assistant_id, incoming, enc.version)
            if not incoming.return_immediately:
                task = await _finish(request, principal, task)
            value = enc.task(task)
            return JSONResponse(result(rpc_id, {"task": value} if enc.v1 else value))
        task = await _task(request, principal, assistant_id, task_id_of(params))
        if action == "cancel":
            if task.state in TERMINAL:
                raise RpcError(TASK_NOT_CANCELABLE, f"Task {task.id} is already {task.state}")
            try:
                await service_of(request).cancel(
                    principal.tenant_id, task.context_id, task.id, "interrupt"
                )
            except HTTPException as exc:
                raise RpcError(TASK_NOT_CANCELABLE, str(exc.detail)) from None
            task = await _finish(request, principal, task)
        return JSONResponse(result(rpc_id, enc.task(task)))
    except RpcError as exc:
        return JSONResponse(error(rpc_id, exc.code, exc.message))
