"""The LangGraph Agent Server API at the root (`/threads`, `/runs`, `/assistants`, `/ok`,
`/info`), the subset `langgraph_sdk` uses for threads and runs. See the gateway README for
the compatibility table."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Header, HTTPException, Query, Request, Response
from fastapi.responses import StreamingResponse

from agentbus.contracts import ThreadUpdateRequest

from .. import __version__
from ..auth.deps import CurrentPrincipal, Principal
from ..ratelimit import per_tenant
from ..runs import RunGateway
from ..sse import HEARTBEAT, sse_response
from ..store import GatewayStore
from ..stream_room import stream_room
from .crons import CronCount, CronCreate, CronPatch, Crons, CronSearch
from .encode import Encoder, frame, parse_event_id, with_message_roles
from .models import (
    AssistantCount,
    AssistantCreate,
    AssistantLatest,
    AssistantPatch,
    AssistantSearch,
    AssistantVersions,
    HistoryRequest,
    RunCreate,
    RunsCancel,
    StateAt,
    StateUpdate,
    ThreadCount,
    ThreadCreate,
    ThreadPatch,
    ThreadPrune,
    ThreadSearch,
    modes_of,
)
from .records import count_threads as records_count_threads
from .records import unfinished_runs
from .runs import TERMINAL, Created, LangGraphRuns, checkpoint_ref, lg_state, new_uuid
from .thread_stream import parse_thread_event_id, thread_frames, thread_modes

router = APIRouter(tags=["langgraph"])
log = logging.getLogger("agentbus.gateway.langgraph")

Auth = CurrentPrincipal


def service_of(request: Request) -> LangGraphRuns:
    svc: LangGraphRuns | None = getattr(request.app.state, "langgraph", None)
    if svc is None:
        runs: RunGateway | None = getattr(request.app.state, "runs", None)
        store: GatewayStore | None = getattr(request.app.state, "store", None)
        if runs is None or store is None:
            raise HTTPException(503, "The gateway is starting")
        history = getattr(request.app.state, "history", None)
        svc = request.app.state.langgraph = LangGraphRuns(runs, store, history=history)
    return svc


Svc = Annotated[LangGraphRuns, Depends(service_of)]
# Refused with 429 before the response starts at the tenant's stream cap (checked first: a
# refused stream uses no rate-limit hit), and rate-limited.
StreamLimit = [stream_room, Depends(per_tenant("stream"))]
RunLimit = [Depends(per_tenant("chat"))]
# Listing endpoints scan a tenant's rows: rate-limited, and their `limit` is capped.
ListLimit = [Depends(per_tenant("list"))]

# Cancels started when a client goes away; kept so they are not garbage-collected mid-way.
_background: set[asyncio.Task[Any]] = set()


def _cancel_later(svc: LangGraphRuns, tenant: str, thread_id: str, run_id: str) -> None:
    """Cancel a run whose client went away (`on_disconnect: cancel`), outside the request."""

    async def cancel() -> None:
        try:
            await svc.cancel(tenant, thread_id, run_id, "interrupt")
        except HTTPException:
            pass  # it ended meanwhile
        except Exception:
            log.warning("could not cancel a run after its client left", exc_info=True)

    task: asyncio.Task[Any] = asyncio.ensure_future(cancel())
    _background.add(task)
    task.add_done_callback(_background.discard)


def _run_headers(thread_id: str, run_id: str, follow: str) -> dict[str, str]:
    # Content-Location names the run (the SDK's on_run_created reads it); Location is where a
    # dropped response continues (`/stream` with Last-Event-ID, or `/join`).
    base = f"/threads/{thread_id}/runs/{run_id}"
    return {"Content-Location": base, "Location": f"{base}/{follow}"}


# -- system --------------------------------------------------------------------------------------


@router.get("/ok", summary="Liveness, as LangGraph servers answer it")
async def ok() -> dict[str, bool]:
    return {"ok": True}


@router.get("/info", summary="Server version and feature flags")
async def info() -> dict[str, Any]:
    return {
        "version": __version__,
        "server": "agentbus-gateway",
        "flags": {"assistants": True, "crons": True, "langsmith": False, "store": True},
    }


# -- assistants ----------------------------------------------------------------------------------


def _select(item: dict[str, Any], select: list[str] | None) -> dict[str, Any]:
    return {k: v for k, v in item.items() if k in select} if select else item


@router.post("/assistants", summary="Create an assistant for a served graph")
async def create_assistant(body: AssistantCreate, principal: Auth, svc: Svc) -> dict[str, Any]:
    return await svc.assistants.create(principal.tenant_id, body)


@router.post("/assistants/search", summary="Search assistants")
async def search_assistants(
    body: AssistantSearch, principal: Auth, svc: Svc, response: Response
) -> list[dict[str, Any]]:
    found = await svc.assistants.search(
        principal.tenant_id,
        metadata=body.metadata,
        graph_id=body.graph_id,
        name=body.name,
        limit=body.limit + 1,  # one more tells whether a next page exists
        offset=body.offset,
        sort_by=body.sort_by,
        sort_order=body.sort_order,
    )
    if len(found) > body.limit:
        response.headers["X-Pagination-Next"] = str(body.offset + body.limit)
    return [_select(a, body.select) for a in found[: body.limit]]


@router.post("/assistants/count", summary="Count assistants")
async def count_assistants(body: AssistantCount, principal: Auth, svc: Svc) -> int:
    return await svc.assistants.count(
        principal.tenant_id, metadata=body.metadata, graph_id=body.graph_id, name=body.name
    )


@router.get("/assistants/{assistant_id}", summary="Get an assistant (or a graph's default)")
async def get_assistant(assistant_id: str, principal: Auth, svc: Svc) -> dict[str, Any]:
    return await svc.assistants.get(principal.tenant_id, assistant_id)


@router.patch("/assistants/{assistant_id}", summary="Change an assistant (a new version)")
async def patch_assistant(
    assistant_id: str, body: AssistantPatch, principal: Auth, svc: Svc
) -> dict[str, Any]:
    return await svc.assistants.patch(principal.tenant_id, assistant_id, body)


@router.delete("/assistants/{assistant_id}", status_code=204, summary="Delete an assistant")
async def delete_assistant(
    assistant_id: str, principal: Auth, svc: Svc, delete_threads: str | None = None
) -> Response:
    assistant = await svc.assistants.get(principal.tenant_id, assistant_id)
    await svc.assistants.delete(principal.tenant_id, assistant_id)
    if _flag(delete_threads):
        await svc.delete_threads_of(principal.tenant_id, assistant["assistant_id"])
    return Response(status_code=204)


@router.post("/assistants/{assistant_id}/versions", summary="The assistant's versions")
async def assistant_versions(
    assistant_id: str, body: AssistantVersions, principal: Auth, svc: Svc
) -> list[dict[str, Any]]:
    return await svc.assistants.versions(
        principal.tenant_id, assistant_id, body.metadata, body.limit, body.offset
    )


@router.post("/assistants/{assistant_id}/latest", summary="Make a version the current one")
async def assistant_latest(
    assistant_id: str, body: AssistantLatest, principal: Auth, svc: Svc
) -> dict[str, Any]:
    return await svc.assistants.set_latest(principal.tenant_id, assistant_id, body.version)


def _xray(value: str | None) -> bool | int:
    if value is None or value.strip().lower() in ("", "false", "0", "no"):
        return False
    if value.strip().lower() in ("true", "yes"):
        return True
    try:
        depth = int(value)
    except ValueError:
        raise HTTPException(422, "xray must be true, false or a depth") from None
    if depth < 0:
        raise HTTPException(422, "xray must be true, false or a depth")
    return depth


@router.get("/assistants/{assistant_id}/graph", summary="The drawable graph")
async def assistant_graph(
    assistant_id: str, principal: Auth, svc: Svc, xray: str | None = None
) -> Any:
    return await svc.assistants.describe(
        principal.tenant_id, assistant_id, "graph", xray=_xray(xray)
    )


@router.get("/assistants/{assistant_id}/schemas", summary="Input, output, state, config schemas")
async def assistant_schemas(assistant_id: str, principal: Auth, svc: Svc) -> Any:
    return await svc.assistants.describe(principal.tenant_id, assistant_id, "schemas")


@router.get("/assistants/{assistant_id}/subgraphs", summary="The schemas of each subgraph")
async def assistant_subgraphs(
    assistant_id: str, principal: Auth, svc: Svc, recurse: str | None = None
) -> Any:
    return await svc.assistants.describe(
        principal.tenant_id, assistant_id, "subgraphs", recurse=_flag(recurse)
    )


@router.get(
    "/assistants/{assistant_id}/subgraphs/{namespace}", summary="The schemas of one subgraph"
)
async def assistant_subgraph(
    assistant_id: str, namespace: str, principal: Auth, svc: Svc, recurse: str | None = None
) -> Any:
    return await svc.assistants.describe(
        principal.tenant_id, assistant_id, "subgraphs", namespace=namespace, recurse=_flag(recurse)
    )


# -- threads -------------------------------------------------------------------------------------


@router.post("/threads", summary="Create a thread")
async def create_thread(body: ThreadCreate, principal: Auth, svc: Svc) -> dict[str, Any]:
    tenant = principal.tenant_id
    thread_id = body.thread_id or new_uuid()
    created = await svc.store.new_thread(tenant, thread_id, body.metadata)
    if created is not None:
        return await svc.thread(tenant, created, with_values=False, new=True)
    existing = await svc.store.thread(tenant, thread_id)
    if existing is None:  # deleted again since: nothing to return but what was asked
        raise HTTPException(409, f"Thread {thread_id!r} was deleted while being created")
    if body.if_exists == "raise":
        raise HTTPException(409, f"Thread {thread_id!r} already exists")
    return await svc.thread(tenant, existing, with_values=False)


@router.post("/threads/search", dependencies=ListLimit, summary="Search threads")
async def search_threads(body: ThreadSearch, principal: Auth, svc: Svc) -> list[dict[str, Any]]:
    await svc.records.ready()
    rows = await svc.records.search_threads(
        principal.tenant_id,
        metadata=body.metadata,
        ids=body.ids,
        status=body.status,
        limit=body.limit,
        offset=body.offset,
        sort_by=body.sort_by,
        sort_order=body.sort_order,
    )
    # Each thread's current values, as LangGraph's search returns them (Agent Chat UI titles its
    # thread list with the first message), unless `select` leaves them out.
    values = not body.select or "values" in body.select or "interrupts" in body.select

    async def listed(row: dict[str, Any]) -> dict[str, Any]:
        try:
            return await svc.thread(principal.tenant_id, row, with_values=values)
        except HTTPException:  # its state unreadable (no orchestrator): listed without values
            return await svc.thread(principal.tenant_id, row, with_values=False)

    found = await asyncio.gather(*(listed(r) for r in rows))
    return [_select(t, body.select) for t in found]


@router.get("/threads/{thread_id}", summary="Get a thread with its current values")
async def get_thread(thread_id: str, principal: Auth, svc: Svc) -> dict[str, Any]:
    row = await svc.thread_row(principal.tenant_id, thread_id)
    return await svc.thread(principal.tenant_id, row, with_values=True)


@router.patch("/threads/{thread_id}", summary="Merge metadata into a thread")
async def patch_thread(
    thread_id: str, body: ThreadPatch, principal: Auth, svc: Svc
) -> dict[str, Any]:
    row = await svc.store.update_thread(principal.tenant_id, thread_id, None, body.metadata)
    if row is None:
        raise HTTPException(404, f"Thread {thread_id!r} not found")
    return await svc.thread(principal.tenant_id, row, with_values=False)


@router.delete("/threads/{thread_id}", status_code=204, summary="Delete a thread")
async def delete_thread(thread_id: str, principal: Auth, svc: Svc) -> Response:
    if not await svc.store.delete_thread(principal.tenant_id, thread_id):
        raise HTTPException(404, f"Thread {thread_id!r} not found")
    return Response(status_code=204)


@router.get("/threads/{thread_id}/state", summary="The thread's current state")
async def thread_state(thread_id: str, principal: Auth, svc: Svc) -> dict[str, Any]:
    await svc.thread_row(principal.tenant_id, thread_id)
    state = await svc.state(principal.tenant_id, thread_id)
    return lg_state(thread_id, state.current)


@router.get("/threads/{thread_id}/state/{checkpoint_id}", summary="The state at a checkpoint")
async def thread_state_at(
    thread_id: str, checkpoint_id: str, principal: Auth, svc: Svc
) -> dict[str, Any]:
    await svc.thread_row(principal.tenant_id, thread_id)
    state = await svc.state(principal.tenant_id, thread_id, checkpoint_id=checkpoint_id)
    if not state.found:
        raise HTTPException(404, f"Checkpoint {checkpoint_id!r} not found")
    return lg_state(thread_id, state.current)


async def _history(
    svc: LangGraphRuns, tenant: str, thread_id: str, req: HistoryRequest
) -> list[dict[str, Any]]:
    await svc.thread_row(tenant, thread_id)
    before = req.before.get("checkpoint_id") if isinstance(req.before, dict) else req.before
    # With `before`, read deep enough to find it, then keep `limit` older ones.
    state = await svc.state(tenant, thread_id, history=1000 if before else req.limit)
    items = state.history
    if before:
        ids = [h.checkpoint_id for h in items]
        items = items[ids.index(before) + 1 :] if before in ids else []
    if req.metadata:
        items = [h for h in items if all(h.metadata.get(k) == v for k, v in req.metadata.items())]
    return [lg_state(thread_id, h) for h in items[: req.limit]]


@router.post("/threads/{thread_id}/history", summary="Earlier states, newest first")
async def post_history(
    thread_id: str, body: HistoryRequest, principal: Auth, svc: Svc
) -> list[dict[str, Any]]:
    return await _history(svc, principal.tenant_id, thread_id, body)


@router.get("/threads/{thread_id}/history", summary="Earlier states, newest first")
async def get_history(
    thread_id: str,
    principal: Auth,
    svc: Svc,
    limit: Annotated[int, Query(ge=1, le=1000)] = 10,
    before: str | None = None,
) -> list[dict[str, Any]]:
    return await _history(
        svc, principal.tenant_id, thread_id, HistoryRequest(limit=limit, before=before)
    )


# -- runs ----------------------------------------------------------------------------------------


async def _lg_stream(
    svc: LangGraphRuns,
    tenant: str,
    row: dict[str, Any],
    modes: list[str],
    after: tuple[int, int],
    *,
    cancel_on_disconnect: bool,
) -> AsyncIterator[bytes]:
    run_id, thread_id = row["run_id"], row["thread_id"]
    encoder = Encoder(frozenset(modes), run_id, thread_id, row["assistant_id"])
    ended = False
    try:
        if after == (-1, 0):
            yield frame("metadata", {"run_id": run_id, "thread_id": thread_id, "attempt": 1})
        async for event in svc.events(tenant, row):
            if event is None:
                yield HEARTBEAT
                continue
            if event.type == "metadata":
                continue  # the gateway's own `metadata` frame came first
            for chunk in encoder.frames(event, after):
                yield chunk
        ended = True
    finally:
        if not ended and cancel_on_disconnect:
            _cancel_later(svc, tenant, thread_id, run_id)


def _sse(body: AsyncIterator[bytes], thread_id: str, run_id: str) -> StreamingResponse:
    return sse_response(body, _run_headers(thread_id, run_id, "stream"))


async def _wait_body(
    svc: LangGraphRuns, tenant: str, row: dict[str, Any], *, cancel_on_disconnect: bool
) -> AsyncIterator[bytes]:
    # Whitespace while the run works keeps proxies from timing out; JSON allows it before a value.
    result: asyncio.Task[dict[str, Any]] = asyncio.ensure_future(svc.outcome(tenant, row))
    ended = False
    try:
        while True:
            done, _ = await asyncio.wait({result}, timeout=svc.gateway.heartbeat_s)
            if done:
                break
            yield b"\n"
        ended = True
        yield json.dumps(result.result(), separators=(",", ":"), default=str).encode()
    finally:
        if not result.done():
            result.cancel()
        if not ended and cancel_on_disconnect:
            _cancel_later(svc, tenant, row["thread_id"], row["run_id"])


def _wait_response(
    svc: LangGraphRuns, tenant: str, row: dict[str, Any], *, cancel_on_disconnect: bool
) -> StreamingResponse:
    return StreamingResponse(
        _wait_body(svc, tenant, row, cancel_on_disconnect=cancel_on_disconnect),
        media_type="application/json",
        headers=_run_headers(row["thread_id"], row["run_id"], "join"),
    )


async def _created_row(svc: LangGraphRuns, tenant: str, thread_id: str, run_id: str) -> Any:
    return await svc.run_row(tenant, thread_id, run_id)


def _followed_row(created: Created) -> dict[str, Any]:
    """What a stream or wait of a run just created reads of its row, without reading it back
    from PostgreSQL (one query less per run, issue 18)."""
    run = created.run
    return {
        "run_id": run.run_id,
        "thread_id": run.thread_id,
        "assistant_id": run.assistant_id,
        "status": "pending",
    }


async def _thread_for_stateless(svc: LangGraphRuns, principal: Principal) -> str:
    thread_id = new_uuid()
    await svc.store.create_thread(principal.tenant_id, thread_id, None, {"stateless": True})
    return thread_id


@router.post("/threads/{thread_id}/runs", dependencies=RunLimit, summary="Start a run")
async def create_run(
    thread_id: str, body: RunCreate, principal: Auth, svc: Svc, response: Response
) -> dict[str, Any]:
    created = await svc.create(principal, thread_id, body)
    row = await _created_row(svc, principal.tenant_id, thread_id, created.run.run_id)
    response.headers.update(_run_headers(thread_id, created.run.run_id, "join"))
    return await svc.run(principal.tenant_id, row)


@router.post("/runs", dependencies=RunLimit, summary="Start a run on a new thread")
async def create_stateless_run(
    body: RunCreate, principal: Auth, svc: Svc, response: Response
) -> dict[str, Any]:
    thread_id = await _thread_for_stateless(svc, principal)
    return await create_run(thread_id, body, principal, svc, response)


@router.post(
    "/threads/{thread_id}/runs/stream", dependencies=StreamLimit, summary="Start and stream"
)
async def stream_run(
    thread_id: str, body: RunCreate, principal: Auth, svc: Svc
) -> StreamingResponse:
    created = await svc.create(principal, thread_id, body)
    row = _followed_row(created)
    stream = _lg_stream(
        svc,
        principal.tenant_id,
        row,
        created.modes,
        (-1, 0),
        cancel_on_disconnect=body.on_disconnect == "cancel",
    )
    return _sse(svc.gateway.streams.track("langgraph", stream), thread_id, created.run.run_id)


@router.post("/runs/stream", dependencies=StreamLimit, summary="Stream a run on a new thread")
async def stream_stateless_run(body: RunCreate, principal: Auth, svc: Svc) -> StreamingResponse:
    thread_id = await _thread_for_stateless(svc, principal)
    return await stream_run(thread_id, body, principal, svc)


@router.post("/threads/{thread_id}/runs/wait", dependencies=RunLimit, summary="Run and wait")
async def wait_run(thread_id: str, body: RunCreate, principal: Auth, svc: Svc) -> StreamingResponse:
    created = await svc.create(principal, thread_id, body)
    row = _followed_row(created)
    return _wait_response(
        svc, principal.tenant_id, row, cancel_on_disconnect=body.on_disconnect == "cancel"
    )


@router.post("/runs/wait", dependencies=RunLimit, summary="Run on a new thread and wait")
async def wait_stateless_run(body: RunCreate, principal: Auth, svc: Svc) -> StreamingResponse:
    thread_id = await _thread_for_stateless(svc, principal)
    return await wait_run(thread_id, body, principal, svc)


@router.get(
    "/threads/{thread_id}/runs",
    dependencies=ListLimit,
    summary="The thread's runs, newest first",
)
async def list_runs(
    thread_id: str,
    principal: Auth,
    svc: Svc,
    limit: Annotated[int, Query(ge=1, le=100)] = 10,
    offset: Annotated[int, Query(ge=0)] = 0,
    status: str | None = None,
) -> list[dict[str, Any]]:
    await svc.thread_row(principal.tenant_id, thread_id)
    rows = await svc.records.runs(principal.tenant_id, thread_id, limit, offset)
    runs = [await svc.run(principal.tenant_id, r) for r in rows]
    return [r for r in runs if status in (None, "", r["status"])]


@router.get("/threads/{thread_id}/runs/{run_id}", summary="Get a run")
async def get_run(thread_id: str, run_id: str, principal: Auth, svc: Svc) -> dict[str, Any]:
    row = await svc.run_row(principal.tenant_id, thread_id, run_id)
    return await svc.run(principal.tenant_id, row)


@router.get(
    "/threads/{thread_id}/runs/{run_id}/join",
    dependencies=StreamLimit,
    summary="Wait for a run's result",
)
async def join_run(thread_id: str, run_id: str, principal: Auth, svc: Svc) -> StreamingResponse:
    row = await svc.run_row(principal.tenant_id, thread_id, run_id)
    return _wait_response(svc, principal.tenant_id, row, cancel_on_disconnect=False)


def _flag(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


@router.get(
    "/threads/{thread_id}/runs/{run_id}/stream",
    dependencies=StreamLimit,
    summary="Stream a run (again), after Last-Event-ID",
)
async def join_stream(
    thread_id: str,
    run_id: str,
    principal: Auth,
    svc: Svc,
    stream_mode: Annotated[list[str] | None, Query()] = None,
    cancel_on_disconnect: str | None = None,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
) -> StreamingResponse:
    row = await svc.run_row(principal.tenant_id, thread_id, run_id)
    try:
        after = parse_event_id(last_event_id)
    except ValueError:
        raise HTTPException(400, "Last-Event-ID must be an event id of this stream") from None
    asked = [m for m in stream_mode or [] if m]  # httpx sends a None parameter as ""
    try:
        modes = modes_of(asked) if asked else list(row.get("stream_modes") or ["values"])
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
    stream = _lg_stream(
        svc,
        principal.tenant_id,
        row,
        modes,
        after,
        cancel_on_disconnect=_flag(cancel_on_disconnect),
    )
    return _sse(svc.gateway.streams.track("langgraph", stream), thread_id, run_id)


@router.post("/threads/{thread_id}/runs/{run_id}/cancel", status_code=204, summary="Cancel a run")
async def cancel_run(
    thread_id: str,
    run_id: str,
    principal: Auth,
    svc: Svc,
    wait: str | None = None,
    action: Literal["interrupt", "rollback"] = "interrupt",
) -> Response:
    row = await svc.run_row(principal.tenant_id, thread_id, run_id)
    await svc.cancel(principal.tenant_id, thread_id, run_id, action)
    if _flag(wait):
        async for event in svc.events(principal.tenant_id, row):
            if event is not None and event.type == "end":
                break
    return Response(status_code=204)


# -- thread state, copies, counts, pruning ---------------------------------------------------


@router.post("/threads/{thread_id}/state", summary="Update the state as a node (update_state)")
async def update_thread_state(
    thread_id: str, body: StateUpdate, principal: Auth, svc: Svc
) -> dict[str, Any]:
    row = await svc.thread_row(principal.tenant_id, thread_id)
    values = with_message_roles(body.values) if isinstance(body.values, dict) else body.values
    updated = await svc.update(
        ThreadUpdateRequest(
            tenant_id=principal.tenant_id,
            op="update_state",
            thread_id=thread_id,
            values=values,
            as_node=body.as_node,
            checkpoint_id=body.from_checkpoint,
            graph_id=(row.get("metadata") or {}).get("graph_id"),
        )
    )
    return {"checkpoint": checkpoint_ref(thread_id, updated.checkpoint_id)}


@router.post("/threads/{thread_id}/state/checkpoint", summary="The state at a checkpoint")
async def thread_state_at_checkpoint(
    thread_id: str, body: StateAt, principal: Auth, svc: Svc
) -> dict[str, Any]:
    checkpoint_id = body.checkpoint.get("checkpoint_id")
    if not isinstance(checkpoint_id, str) or not checkpoint_id:
        raise HTTPException(422, "checkpoint.checkpoint_id is required")
    return await thread_state_at(thread_id, checkpoint_id, principal, svc)


@router.post("/threads/{thread_id}/copy", summary="Copy a thread with its checkpoints")
async def copy_thread(thread_id: str, principal: Auth, svc: Svc) -> dict[str, Any]:
    tenant = principal.tenant_id
    row = await svc.thread_row(tenant, thread_id)
    copy_id = new_uuid()
    await svc.update(
        ThreadUpdateRequest(
            tenant_id=tenant, op="copy", thread_id=thread_id, target_thread_id=copy_id
        )
    )
    copied = await svc.store.create_thread(tenant, copy_id, None, dict(row.get("metadata") or {}))
    return await svc.thread(tenant, copied, with_values=True)


@router.post("/threads/count", summary="Count threads")
async def count_threads(body: ThreadCount, principal: Auth, svc: Svc) -> int:
    return await records_count_threads(
        svc.store.pool, principal.tenant_id, body.metadata, body.status
    )


@router.post("/threads/prune", summary="Delete threads, or all but their latest checkpoint")
async def prune_threads(body: ThreadPrune, principal: Auth, svc: Svc) -> dict[str, int]:
    tenant = principal.tenant_id
    owned = [t for t in dict.fromkeys(body.thread_ids) if await svc.store.thread(tenant, t)]
    if owned:
        await svc.update(
            ThreadUpdateRequest(
                tenant_id=tenant, op="prune", thread_ids=owned, strategy=body.strategy
            )
        )
    if body.strategy == "delete":
        for thread_id in owned:
            await svc.store.delete_thread(tenant, thread_id)
    return {"pruned_count": len(owned)}


# -- runs: delete, bulk cancel, batch --------------------------------------------------------


@router.delete("/threads/{thread_id}/runs/{run_id}", status_code=204, summary="Delete a run")
async def delete_run(thread_id: str, run_id: str, principal: Auth, svc: Svc) -> Response:
    row = await svc.run_row(principal.tenant_id, thread_id, run_id)
    status = await svc.run_status(principal.tenant_id, row)
    if status not in TERMINAL:
        raise HTTPException(409, f"Run {run_id!r} is {status}; cancel it before deleting it")
    await svc.records.drop_run(principal.tenant_id, run_id)
    return Response(status_code=204)


@router.post("/runs/cancel", status_code=204, summary="Cancel runs by thread, ids or status")
async def cancel_runs(
    body: RunsCancel,
    principal: Auth,
    svc: Svc,
    action: Literal["interrupt", "rollback"] = "interrupt",
) -> Response:
    tenant = principal.tenant_id
    if body.thread_id:
        await svc.thread_row(tenant, body.thread_id)
    rows = await unfinished_runs(svc.store.pool, tenant, body.thread_id, body.run_ids)
    if body.run_ids and not rows:
        raise HTTPException(404, f"Runs {body.run_ids} not found or already ended")
    for row in rows:
        status = await svc.run_status(tenant, row)
        if status in TERMINAL:
            continue
        if body.status in ("pending", "running") and status != body.status:
            continue
        try:
            await svc.cancel(tenant, row["thread_id"], row["run_id"], action)
        except HTTPException as exc:
            if exc.status_code != 409:  # ended meanwhile
                raise
    return Response(status_code=204)


@router.post("/runs/batch", dependencies=RunLimit, summary="Start stateless background runs")
async def batch_runs(
    body: Annotated[list[RunCreate], Body(min_length=1, max_length=100)],
    principal: Auth,
    svc: Svc,
    response: Response,
) -> list[dict[str, Any]]:
    # Every body is checked before the first run starts.
    for run in body:
        await svc.assistants.resolve(principal.tenant_id, run.assistant_id)
    return [await create_stateless_run(run, principal, svc, response) for run in body]


@router.get(
    "/threads/{thread_id}/stream",
    dependencies=StreamLimit,
    summary="Join the thread's stream: each of its runs, one after another (thread_stream.py)",
)
async def join_thread_stream(
    thread_id: str,
    principal: Auth,
    svc: Svc,
    stream_mode: Annotated[list[str] | None, Query()] = None,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
) -> StreamingResponse:
    tenant = principal.tenant_id
    await svc.thread_row(tenant, thread_id)
    try:
        modes = thread_modes(stream_mode or [])
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
    try:
        resume = parse_thread_event_id(last_event_id)
    except ValueError:
        raise HTTPException(400, "Last-Event-ID must be an event id of this stream") from None
    stream = thread_frames(svc, tenant, thread_id, modes, resume)
    return sse_response(svc.gateway.streams.track("langgraph", stream))


# -- crons -------------------------------------------------------------------------------------


def crons_of(svc: LangGraphRuns) -> Crons:
    return svc.crons


@router.post("/runs/crons", summary="Schedule runs, each on a new thread")
async def create_cron(body: CronCreate, principal: Auth, svc: Svc) -> dict[str, Any]:
    return await crons_of(svc).create(principal, body, None)


@router.post("/threads/{thread_id}/runs/crons", summary="Schedule runs on a thread")
async def create_thread_cron(
    thread_id: str, body: CronCreate, principal: Auth, svc: Svc
) -> dict[str, Any]:
    return await crons_of(svc).create(principal, body, thread_id)


@router.post("/runs/crons/search", summary="Search crons")
async def search_crons(body: CronSearch, principal: Auth, svc: Svc) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = await crons_of(svc).search(principal.tenant_id, body)
    return found


@router.post("/runs/crons/count", summary="Count crons")
async def count_crons(body: CronCount, principal: Auth, svc: Svc) -> int:
    counted: int = await crons_of(svc).search(principal.tenant_id, body, count=True)
    return counted


@router.patch("/runs/crons/{cron_id}", summary="Change a cron")
async def patch_cron(cron_id: str, body: CronPatch, principal: Auth, svc: Svc) -> dict[str, Any]:
    return await crons_of(svc).patch(principal.tenant_id, cron_id, body)


@router.delete("/runs/crons/{cron_id}", status_code=204, summary="Delete a cron")
async def delete_cron(cron_id: str, principal: Auth, svc: Svc) -> Response:
    await crons_of(svc).delete(principal.tenant_id, cron_id)
    return Response(status_code=204)
