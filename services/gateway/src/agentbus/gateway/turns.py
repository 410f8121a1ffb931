"""One turn of a conversation, shared by every chat API of the gateway (native, AI SDK,
OpenAI-compatible, MCP, A2A): the thread, the run's admission and submission, and its events.

Each protocol adapter only translates its request into `start_turn` and the run's events into its
own wire format; auth, tenants and rate limits stay in the routes' dependencies, so every API gets
the same admission per thread (`enqueue`), the same resumable event log in JetStream and the same
traces.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from fastapi import HTTPException, Request
from nats.js.errors import NotFoundError

from agentbus.contracts import RunEvent, new_id
from agentbus.contracts import subjects as s
from agentbus.contracts.streams import RUN_EVENTS

from .auth.deps import Principal
from .langgraph.routes import service_of
from .runs import RunGateway, StreamUnavailable
from .store import GatewayStore


async def assistants(request: Request, tenant_id: str) -> dict[str, str]:
    """The assistants a caller can run, id -> description: the graphs the orchestrators serve,
    learned over the bus by the LangGraph API's catalog (the one place adapters read them)."""
    graphs = await service_of(request).assistants.catalog.graphs(tenant_id)
    return {gid: info.description or info.name or gid for gid, info in graphs.items()}


async def assistant_or_404(request: Request, tenant_id: str, assistant_id: str) -> str:
    await service_of(request).assistants.catalog.require(tenant_id, assistant_id)
    return assistant_id


def runs_of(request: Request) -> RunGateway:
    runs: RunGateway | None = getattr(request.app.state, "runs", None)
    if runs is None:
        raise HTTPException(503, "The gateway is starting")
    return runs


def store_of(request: Request) -> GatewayStore:
    store: GatewayStore | None = getattr(request.app.state, "store", None)
    if store is None:
        raise HTTPException(503, "The gateway is starting")
    return store


@dataclass(frozen=True)
class Turn:
    run_id: str
    thread_id: str
    assistant_id: str


async def start_turn(
    request: Request,
    principal: Principal,
    *,
    messages: list[dict[str, Any]],
    thread_id: str | None = None,
    assistant_id: str = "agent",
    create_thread: bool = True,
    title: str | None = None,
    metadata: dict[str, Any] | None = None,
) -> Turn:
    """Submit `messages` as the input of a run on `thread_id` (a new thread when None).

    A thread id that does not exist is created when `create_thread`, a 404 otherwise. The run
    waits for the thread's active run (the `enqueue` strategy), whichever API started that one.
    """
    store, runs = store_of(request), runs_of(request)
    tenant = principal.tenant_id
    if thread_id is None:
        thread_id = new_id()
        await store.create_thread(tenant, thread_id, title, metadata or {})
    elif create_thread:
        # An upsert that leaves an existing thread as it is: one query, not a look-up first.
        await store.create_thread(tenant, thread_id, title, metadata or {})
    elif await store.thread(tenant, thread_id) is None:
        raise HTTPException(404, "Thread not found")
    run = await runs.submit(
        tenant,
        thread_id,
        assistant_id=assistant_id,
        input={"messages": messages},
        metadata=metadata,
        user_id=principal.user_id,
        multitask_strategy="enqueue",
        admit=service_of(request).enqueue,
    )
    # The asker's query history (history.py); completed from the run's `end` event.
    history = getattr(request.app.state, "history", None)
    if history is not None:
        await history.record(principal, run.run_id, thread_id, assistant_id, messages)
    return Turn(run.run_id, thread_id, assistant_id)


async def follow(
    runs: RunGateway, tenant_id: str, run_id: str, *, after: int = -1
) -> AsyncIterator[RunEvent | None]:
    """The run's events after `after` (None for a heartbeat interval), subscribed before it
    returns, so a route can still answer 503 with Retry-After before its response starts."""
    try:
        return await runs.open_events(tenant_id, run_id, after=after)
    except StreamUnavailable:
        raise HTTPException(
            503, f"Cannot stream run {run_id} now; retry", headers={"Retry-After": "1"}
        ) from None


async def last_event(runs: RunGateway, run_id: str) -> RunEvent | None:
    """The run's latest event in RUN_EVENTS, None when it has none (queued, or expired)."""
    try:
        msg = await runs.js.get_last_msg(RUN_EVENTS.name, s.run_events(run_id))
    except NotFoundError:
        return None
    return RunEvent.model_validate_json(msg.data or b"{}")


async def active_run(
    runs: RunGateway, store: GatewayStore, tenant_id: str, thread_id: str
) -> str | None:
    """The thread's latest run if it has not ended, else None."""
    latest = await store.runs(tenant_id, thread_id, 1)
    if not latest or latest[0]["status"] not in ("pending", "running"):
        return None
    run_id = str(latest[0]["run_id"])
    last = await last_event(runs, run_id)
    if last is not None and last.type == "end":
        return None
    return run_id


def text_of(content: Any) -> str:
    """A message content as text: a string, or the text parts of a list of parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            str(p.get("text", ""))
            for p in content
            if isinstance(p, dict) and p.get("type") == "text"
        )
    return ""
