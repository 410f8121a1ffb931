"""The native API: threads, chat (SSE and JSON), and resumable run streams."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, HTTPException, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from agentbus.contracts import RunEvent, ThreadState, ThreadStateRequest, new_id
from agentbus.contracts import subjects as s

from ..auth.deps import CurrentPrincipal, Principal
from ..ratelimit import per_tenant
from ..runs import RunGateway, StreamUnavailable
from ..sse import HEARTBEAT, native_frames, sse_response
from ..store import GatewayStore
from ..turns import start_turn
from ..upstream import request_reply
from .responses import ChatAnswer, Thread, ThreadMessages, ThreadPage

router = APIRouter(prefix="/api/v1", tags=["native"])

Auth = CurrentPrincipal
ThreadId = Annotated[
    str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
]


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class ChatRequest(Body):
    message: str = Field(min_length=1, max_length=32_000)
    thread_id: ThreadId | None = None
    assistant_id: str = Field(default="agent", min_length=1, max_length=128)


class ThreadCreate(Body):
    thread_id: ThreadId | None = None
    title: str | None = Field(default=None, max_length=500)
    metadata: dict[str, Any] = Field(default_factory=dict)


class ThreadUpdate(Body):
    title: str | None = Field(default=None, max_length=500)
    metadata: dict[str, Any] | None = None


# async: a plain `def` dependency costs a trip through the thread pool on every request.
async def runs_of(request: Request) -> RunGateway:
    gateway: RunGateway = request.app.state.runs
    return gateway


async def store_of(request: Request) -> GatewayStore:
    store: GatewayStore = request.app.state.store
    return store


Runs = Annotated[RunGateway, Depends(runs_of)]
Store = Annotated[GatewayStore, Depends(store_of)]


async def _thread_or_404(store: GatewayStore, tenant_id: str, thread_id: str) -> dict[str, Any]:
    thread = await store.thread(tenant_id, thread_id)
    if thread is None:
        raise HTTPException(404, "Thread not found")
    return thread


async def _native_stream(
    runs: RunGateway, tenant_id: str, run_id: str, after: int
) -> AsyncIterator[bytes]:
    """Subscribed before the response starts, so a refused subscription is a 503."""
    try:
        events = await runs.open_events(tenant_id, run_id, after=after)
    except StreamUnavailable:
        raise HTTPException(
            503,
            f"Cannot stream run {run_id} now; resume with GET /api/v1/runs/{run_id}/stream",
            headers={"Retry-After": "1"},
        ) from None
    return _native_frames(events)


async def _native_frames(events: AsyncIterator[RunEvent | None]) -> AsyncIterator[bytes]:
    """`stream_end` goes out once the events end, after the gateway has settled the run (its
    record, the history): as with the adapters' last frames, a client that reads the run on
    `stream_end` finds it ended, and a client that leaves at `stream_end` has not left that work
    to run under its next request."""
    started = time.monotonic()
    tokens = 0
    last: bytes | None = None
    async for event in events:
        if event is None:
            yield HEARTBEAT
            continue
        if event.type == "token":
            tokens += 1
        frames = native_frames(event, tokens, (time.monotonic() - started) * 1e3)
        if event.type == "end":
            *frames, last = frames
        for chunk in frames:
            yield chunk
    if last is not None:
        yield last


def _sse(body: AsyncIterator[bytes], run_id: str) -> StreamingResponse:
    return sse_response(body, {"Content-Location": f"/api/v1/runs/{run_id}/stream"})


async def _start_chat(
    request: Request, req: ChatRequest, principal: Principal, store: GatewayStore, runs: RunGateway
) -> tuple[str, str]:
    # The one turn path of every chat API (threads, `enqueue` admission per thread, submission).
    turn = await start_turn(
        request,
        principal,
        messages=[{"role": "user", "content": req.message}],
        thread_id=req.thread_id,
        assistant_id=req.assistant_id,
        create_thread=False,
        title=req.message[:80],
    )
    return turn.run_id, turn.thread_id


@router.post(
    "/chat/stream",
    summary="Ask and stream the answer as Server-Sent Events",
    dependencies=[Depends(per_tenant("stream"))],
)
async def chat_stream(
    request: Request, req: ChatRequest, principal: Auth, store: Store, runs: Runs
) -> StreamingResponse:
    run_id, _ = await _start_chat(request, req, principal, store, runs)
    return _sse(
        runs.streams.track("chat", await _native_stream(runs, principal.tenant_id, run_id, -1)),
        run_id,
    )


@router.post(
    "/chat",
    summary="Ask and wait for the whole answer",
    response_model=ChatAnswer,
    dependencies=[Depends(per_tenant("chat"))],
)
async def chat(
    request: Request, req: ChatRequest, principal: Auth, store: Store, runs: Runs
) -> dict[str, Any]:
    run_id, thread_id = await _start_chat(request, req, principal, store, runs)
    async for event in runs.events(principal.tenant_id, run_id):
        if event is not None and event.type == "end":
            return {
                "run_id": run_id,
                "thread_id": thread_id,
                "status": event.status,
                "text": event.data.get("answer", ""),
                "citations": event.data.get("citations", []),
            }
    raise HTTPException(502, "The run ended without a result")


@router.get(
    "/runs/{run_id}/stream",
    summary="Resume a run's stream after Last-Event-ID",
    dependencies=[Depends(per_tenant("stream"))],
)
async def run_stream(
    run_id: str,
    principal: Auth,
    store: Store,
    runs: Runs,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
) -> StreamingResponse:
    if await store.run(principal.tenant_id, run_id) is None:
        raise HTTPException(404, "Run not found")
    try:
        after = int(last_event_id) if last_event_id not in (None, "") else -1
    except ValueError:
        raise HTTPException(400, "Last-Event-ID must be an event id of this stream") from None
    return _sse(
        runs.streams.track("chat", await _native_stream(runs, principal.tenant_id, run_id, after)),
        run_id,
    )


@router.post("/threads", status_code=201, summary="Create a thread", response_model=Thread)
async def create_thread(req: ThreadCreate, principal: Auth, store: Store) -> dict[str, Any]:
    return await store.create_thread(
        principal.tenant_id, req.thread_id or new_id(), req.title, req.metadata
    )


@router.get("/threads", summary="List threads, newest first", response_model=ThreadPage)
async def list_threads(
    principal: Auth,
    store: Store,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> dict[str, Any]:
    items = await store.threads(principal.tenant_id, limit, offset)
    return {"items": items, "limit": limit, "offset": offset}


@router.get("/threads/{thread_id}", summary="Get a thread", response_model=Thread)
async def get_thread(thread_id: str, principal: Auth, store: Store) -> dict[str, Any]:
    return await _thread_or_404(store, principal.tenant_id, thread_id)


@router.patch(
    "/threads/{thread_id}",
    summary="Update a thread's title or metadata",
    response_model=Thread,
)
async def update_thread(
    thread_id: str, req: ThreadUpdate, principal: Auth, store: Store
) -> dict[str, Any]:
    updated = await store.update_thread(principal.tenant_id, thread_id, req.title, req.metadata)
    if updated is None:
        raise HTTPException(404, "Thread not found")
    return updated


@router.delete("/threads/{thread_id}", status_code=204, summary="Delete a thread")
async def delete_thread(thread_id: str, principal: Auth, store: Store) -> None:
    if not await store.delete_thread(principal.tenant_id, thread_id):
        raise HTTPException(404, "Thread not found")


@router.get(
    "/threads/{thread_id}/messages",
    summary="The thread's messages",
    response_model=ThreadMessages,
)
async def thread_messages(
    thread_id: str, principal: Auth, store: Store, runs: Runs
) -> dict[str, Any]:
    await _thread_or_404(store, principal.tenant_id, thread_id)
    req = ThreadStateRequest(tenant_id=principal.tenant_id, thread_id=thread_id)
    state = await request_reply(
        runs.nc, s.THREADS_STATE, req, ThreadState, "Thread messages", timeout=10
    )
    messages = state.current.values.get("messages", []) if state.found else []
    return {"thread_id": thread_id, "messages": messages}
