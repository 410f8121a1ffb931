"""Runs and threads of the LangGraph API over the platform: admission on the thread
(`thread_runs` KV), submission, status from RUN_EVENTS, cancellation, thread state."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from typing import Any, Literal

from fastapi import HTTPException
from nats.js.errors import NotFoundError

from agentbus.contracts import (
    THREADS_UPDATE,
    RunControl,
    RunEvent,
    RunRequested,
    ThreadState,
    ThreadStateRequest,
    ThreadUpdated,
    ThreadUpdateRequest,
)
from agentbus.contracts import subjects as s
from agentbus.contracts.runs import MultitaskStrategy
from agentbus.contracts.streams import RUN_EVENTS
from agentbus.runtime.thread_runs import Admission, RunNotAccepted, ThreadRuns, ThreadRunsKV
from agentbus.runtime.traces import nats_span

from ..auth.deps import Principal
from ..routes.history import HistoryStore, question_in
from ..runs import RunGateway
from ..store import GatewayStore
from ..upstream import request_reply, runs_unavailable
from .assistants import Assistants, GraphCatalog, merge_config
from .crons import Crons
from .encode import Encoder, with_message_roles, with_message_types
from .followups import Followups, WebhookPolicy
from .models import RunCreate
from .records import Records

# The built-in graphs, for the native chat adapters (turns.py) only; the LangGraph API learns
# the served graphs from the orchestrator (assistants.py).
ASSISTANTS = {
    "agent": "Supervisor that routes questions to delivery-metrics, resource-planner and "
    "insights specialists (subgraphs) and answers with citations",
    "echo": "Streams the user's message back word by word",
    "steps": "input.steps checkpointed nodes of input.delay seconds each (diagnostics)",
}

# Native run status -> LangGraph's (a cancelled run is `interrupted` there).
LG_STATUS = {"cancelled": "interrupted"}
TERMINAL = {"success", "error", "cancelled", "interrupted", "timeout"}

# A run admitted but without a single event after this long is published again (its first
# publish may have been lost with a gateway or orchestrator); within the RUNS dedupe window, so
# a repeat of a publish that did arrive is dropped by JetStream.
REPUBLISH_AFTER_S = 60.0
REPUBLISH_UNTIL_S = 9 * 60.0
# Without any event for this long the active run is taken as dead (RUN_EVENTS keeps an hour).
DEAD_AFTER_S = 3600.0


def new_uuid() -> str:
    return str(uuid.uuid4())


@dataclass
class Created:
    run: RunRequested
    admission: Admission
    modes: list[str]


class LangGraphRuns:
    def __init__(
        self,
        gateway: RunGateway,
        store: GatewayStore,
        webhooks: WebhookPolicy | None = None,
        history: HistoryStore | None = None,
    ) -> None:
        self.gateway = gateway
        self.store = store
        # The askers' query history (history.py): runs whose input is a question join it.
        self.history = history
        self.records = Records(store.pool)
        self.crons = Crons(store.pool, self)
        self.followups = Followups(store.pool, self, webhooks or WebhookPolicy())
        self.assistants = Assistants(store.pool, GraphCatalog(gateway.nc))
        self._kv: ThreadRunsKV | None = None

    async def kv(self) -> ThreadRunsKV:
        if self._kv is None:
            self._kv = await ThreadRunsKV.open(self.gateway.js)
        return self._kv

    # -- threads -----------------------------------------------------------------------------

    async def thread_row(self, tenant_id: str, thread_id: str) -> dict[str, Any]:
        row = await self.store.thread(tenant_id, thread_id)
        if row is None:
            raise HTTPException(404, f"Thread {thread_id!r} not found")
        return row

    async def thread_status(self, tenant_id: str, row: dict[str, Any]) -> str:
        value, _ = await (await self.kv()).read(tenant_id, row["thread_id"])
        if value.busy or value.queue:
            return "busy"
        if row.get("status") != "busy":
            return str(row.get("status") or "idle")
        # The stored status is refreshed only when someone watched the run end: ask the events.
        latest = await self.records.runs(tenant_id, row["thread_id"], 1, 0)
        if not latest:
            return "idle"
        status = await self.run_status(tenant_id, latest[0])
        return {"interrupted": "interrupted", "error": "error"}.get(status, "idle")

    async def thread(
        self, tenant_id: str, row: dict[str, Any], *, with_values: bool, new: bool = False
    ) -> dict[str, Any]:
        """The thread as the API shows it. `new`: this request just inserted it, so no run has
        been on it and it is idle without asking the thread's run slot (a NATS round trip on
        the path to every first token: SDK clients create a thread before each run)."""
        metadata = dict(row.get("metadata") or {})
        out: dict[str, Any] = {
            "thread_id": row["thread_id"],
            "created_at": row["created_at"],
            "updated_at": row["updated_at"],
            "metadata": metadata,
            "status": "idle" if new else await self.thread_status(tenant_id, row),
            "values": {},
            "interrupts": {},
        }
        if with_values:
            state = await self.state(tenant_id, row["thread_id"])
            if state.found:
                out["values"] = state_values(state.current.values)
                if state.current.interrupts:
                    out["interrupts"] = {"__root__": state.current.interrupts}
        return out

    async def delete_threads_of(self, tenant_id: str, assistant_id: str) -> int:
        """Delete the threads an assistant ran on (their `metadata.assistant_id`), with their
        runs and checkpoints; a run still going on one is cancelled first."""
        await self.records.ready()
        deleted = 0
        while True:
            rows = await self.records.search_threads(
                tenant_id,
                metadata={"assistant_id": assistant_id},
                ids=None,
                status=None,
                limit=100,
                offset=0,
                sort_by=None,
                sort_order=None,
            )
            before = deleted
            for row in rows:
                value, _ = await (await self.kv()).read(tenant_id, row["thread_id"])
                for waiting in [*([value.active] if value.active else []), *value.queue]:
                    with contextlib.suppress(HTTPException):
                        await self.cancel(tenant_id, row["thread_id"], waiting.run_id, "interrupt")
                deleted += await self.store.delete_thread(tenant_id, row["thread_id"])
            if deleted == before:  # none left (or none deletable): done
                return deleted

    async def state(
        self, tenant_id: str, thread_id: str, checkpoint_id: str | None = None, history: int = 0
    ) -> ThreadState:
        req = ThreadStateRequest(
            tenant_id=tenant_id,
            thread_id=thread_id,
            checkpoint_id=checkpoint_id,
            history_limit=history,
        )
        return await request_reply(
            self.gateway.nc, s.THREADS_STATE, req, ThreadState, "Thread state", timeout=10
        )

    async def update(self, req: ThreadUpdateRequest) -> ThreadUpdated:
        """A change to the thread's checkpoints, made by the orchestrator."""
        return await request_reply(
            self.gateway.nc,
            THREADS_UPDATE,
            req,
            ThreadUpdated,
            "Thread update",
            refusals={"not_found": 404, "no_graph": 409, "invalid_update": 400},
        )

    # -- runs --------------------------------------------------------------------------------

    async def create(
        self,
        principal: Principal,
        thread_id: str,
        body: RunCreate,
        *,
        run_id: str | None = None,
        delete_thread: bool = False,
        asked: bool = True,
    ) -> Created:
        """Validate, record and admit a run; 404/409 before anything is published.
        `delete_thread`: the thread goes when the run ends (a cron's `on_run_completed`).
        `asked`: the principal asked it now, so a question in its input joins their query
        history (a cron's tick is not asked by anyone)."""
        tenant = principal.tenant_id
        webhook = self.followups.policy.check(body.webhook) if body.webhook else None
        # Independent reads and writes go together: each PostgreSQL round trip here is on the
        # path to the run's first token (bench/langgraph_api_hops.py).
        assistant, thread = await asyncio.gather(
            self.assistants.resolve(tenant, body.assistant_id),
            self.store.thread(tenant, thread_id),
        )
        # Agent Chat UI lists a graph's threads by these (LangGraph sets them on the first run).
        marks = {"graph_id": assistant["graph_id"], "assistant_id": assistant["assistant_id"]}
        writes: list[Awaitable[Any]] = []
        if thread is None:
            if body.if_not_exists != "create":
                raise HTTPException(404, f"Thread {thread_id!r} not found")
            await self.store.create_thread(tenant, thread_id, None, marks)  # before its run
        elif any(k not in (thread.get("metadata") or {}) for k in marks):
            writes.append(
                self.store.update_thread(
                    tenant, thread_id, None, {**marks, **(thread.get("metadata") or {})}
                )
            )
        modes = body.modes
        context = {**(assistant["context"] or {}), **(body.context or {})}
        run = RunRequested(
            tenant_id=tenant,
            run_id=run_id or new_uuid(),
            thread_id=thread_id,
            assistant_id=assistant["assistant_id"],
            graph_id=assistant["graph_id"],
            input=with_message_roles(body.input) if body.input is not None else None,
            command=body.command,
            config=merge_config(assistant["config"] or {}, body.config),
            context=context or None,
            checkpoint_id=body.from_checkpoint,
            interrupt_before=body.interrupt_before,
            interrupt_after=body.interrupt_after,
            stream_subgraphs=bool(body.stream_subgraphs),
            metadata=body.metadata or {},
            # Always both: a later join or wait may ask for any mode, and wait needs the values.
            stream_modes=["values", "updates"],
            multitask_strategy=body.multitask_strategy,
            user_id=principal.user_id,
        )
        *_, recorded = done = await asyncio.gather(
            *writes,
            self.store.create_run(tenant, run.run_id, thread_id, run.assistant_id, run.metadata),
            self.records.add_run(tenant, run.run_id, thread_id, body.multitask_strategy, modes),
            return_exceptions=True,  # all settled before any clean-up below
        )
        if failed := next((r for r in done if isinstance(r, BaseException)), None):
            # Only a record this call made: a retried create (a cron tick whose replica died
            # after creating it) fails on the run row, and the first attempt's record stays.
            if recorded is True:
                with contextlib.suppress(Exception):
                    await self.records.drop_run(tenant, run.run_id)
            raise failed
        if webhook or delete_thread:
            await self.followups.follow(
                tenant, run.run_id, thread_id, webhook=webhook, delete_thread=delete_thread
            )
        if body.after_seconds:
            # Pending until then; the follow-up pass admits it (on any replica).
            await self.followups.delay(run, body.multitask_strategy, body.after_seconds)
            await self._asked(principal, run, asked)
            return Created(run, Admission("queued"), modes)
        try:
            admission = await self.admit(run, body.multitask_strategy)
        except Exception:
            await self.records.drop_run(tenant, run.run_id)
            raise
        await self._asked(principal, run, asked)
        return Created(run, admission, modes)

    async def _asked(self, principal: Principal, run: RunRequested, asked: bool) -> None:
        """A run admitted with a question in its input joins the asker's query history
        (completed from its `end` event as a chat turn's); any other input stays out."""
        if not asked or self.history is None or not question_in(run.input):
            return
        assert isinstance(run.input, dict)  # question_in found its messages
        await self.history.record(
            principal, run.run_id, run.thread_id, run.assistant_id, run.input["messages"]
        )

    async def admit(self, run: RunRequested, strategy: MultitaskStrategy) -> Admission:
        """Admit a recorded run on its thread: started, queued (stopping the active run for
        interrupt/rollback), or refused with a 409 (its records dropped)."""
        tenant, thread_id = run.tenant_id, run.thread_id
        try:
            admission = await (await self.kv()).admit(run, strategy, self._is_stale)
        except RunNotAccepted as exc:
            await self.store.finish_run(tenant, run.run_id, "error")
            raise runs_unavailable(str(exc)) from None
        if admission.outcome == "rejected":
            await self.records.drop_run(tenant, run.run_id)
            raise HTTPException(
                409,
                f"Thread {thread_id!r} is busy with run {admission.active_run_id}; "
                "use multitask_strategy enqueue, interrupt or rollback to run after it",
            )
        if admission.outcome == "queued" and admission.active_run_id is not None:
            if strategy == "interrupt":
                await self._control(tenant, admission.active_run_id, "interrupt")
            elif strategy == "rollback":
                await self._control(tenant, admission.active_run_id, "cancel")
        return admission

    async def enqueue(self, run: RunRequested) -> None:
        """Admit a native chat run: it waits for the thread's active run, as `enqueue` does."""
        await (await self.kv()).admit(run, "enqueue", self._is_stale)

    async def _control(
        self, tenant_id: str, run_id: str, action: Literal["cancel", "interrupt"]
    ) -> None:
        if action == "cancel":
            await self.gateway.cancel(tenant_id, run_id)
            return
        ctl = RunControl(
            tenant_id=tenant_id,
            run_id=run_id,
            action="interrupt",
            reason="a newer run on the thread interrupts this one",
        )
        subject = s.run_control(run_id)
        with nats_span(subject) as headers:
            await self.gateway.nc.publish(subject, ctl.model_dump_json().encode(), headers=headers)

    async def _is_stale(self, value: ThreadRuns) -> bool:
        active = value.active
        assert active is not None
        last = await self.last_event(active.run_id)
        if last is not None:
            return last.type == "end"
        age = time.time() - value.since
        if age > DEAD_AFTER_S:
            return True
        if REPUBLISH_AFTER_S < age < REPUBLISH_UNTIL_S:
            await (await self.kv()).republish_active(
                active.tenant_id, active.thread_id, active.run_id
            )
        return False

    async def last_event(self, run_id: str) -> RunEvent | None:
        try:
            msg = await self.gateway.js.get_last_msg(RUN_EVENTS.name, s.run_events(run_id))
        except NotFoundError:
            return None
        return RunEvent.model_validate_json(msg.data or b"{}")

    async def run_status(self, tenant_id: str, row: dict[str, Any]) -> str:
        """The native status: the run's last event says it; without events, the stored one."""
        last = await self.last_event(row["run_id"])
        if last is not None and last.tenant_id == tenant_id:
            if last.type != "end":
                return "running"
            status = last.status or "success"
            if row.get("status") != status:
                await self.records.set_run_status(tenant_id, row["run_id"], status)
            return status
        stored = str(row.get("status") or "pending")
        return stored if stored in TERMINAL else "pending"

    async def run(self, tenant_id: str, row: dict[str, Any]) -> dict[str, Any]:
        status = await self.run_status(tenant_id, row)
        return {
            "run_id": row["run_id"],
            "thread_id": row["thread_id"],
            "assistant_id": row["assistant_id"],
            "created_at": row["created_at"],
            "updated_at": row["updated_at"],
            "status": LG_STATUS.get(status, status),
            "metadata": row.get("metadata") or {},
            "multitask_strategy": row.get("multitask_strategy", "reject"),
            "kwargs": {"stream_mode": row.get("stream_modes", ["values"])},
        }

    async def run_row(self, tenant_id: str, thread_id: str, run_id: str) -> dict[str, Any]:
        row = await self.records.run(tenant_id, thread_id, run_id)
        if row is None:
            raise HTTPException(404, f"Run {run_id!r} not found")
        return row

    async def cancel(
        self, tenant_id: str, thread_id: str, run_id: str, action: Literal["interrupt", "rollback"]
    ) -> None:
        """Stop a run: a waiting one leaves the queue and ends `cancelled` at once; a running
        one is cancelled by its orchestrator (and rolled back on `rollback`)."""
        stop: Literal["cancel", "rollback"] = "cancel" if action == "interrupt" else "rollback"
        # Its end event first: the orchestrator publishes `end` before it frees the thread's
        # slot, so in between the slot still names the run as active.
        await self._refuse_ended(run_id)
        if await self.followups.drop_delayed(tenant_id, run_id):
            where: Literal["active", "removed", "unknown"] = "removed"  # delayed, not started
        else:
            where = await (await self.kv()).mark_stop(tenant_id, thread_id, run_id, stop)
        if where == "removed":
            end = RunEvent(
                tenant_id=tenant_id,
                run_id=run_id,
                thread_id=thread_id,
                seq=0,
                type="end",
                data={"reason": "cancelled before it started"},
                status="cancelled",
            )
            subject = s.run_events(run_id)
            with nats_span(subject, headers={"Nats-Msg-Id": f"{run_id}:0"}) as headers:
                await self.gateway.js.publish(
                    subject, end.model_dump_json().encode(), headers=headers
                )
            await self.records.set_run_status(tenant_id, run_id, "cancelled")
            return
        if where == "unknown":  # it may have ended since the look-up above
            await self._refuse_ended(run_id)
        await self.gateway.cancel(tenant_id, run_id)

    async def _refuse_ended(self, run_id: str) -> None:
        last = await self.last_event(run_id)
        if last is not None and last.type == "end":
            raise HTTPException(409, f"Run {run_id!r} has already ended ({last.status})")

    async def outcome(self, tenant_id: str, row: dict[str, Any]) -> dict[str, Any]:
        """Wait for the run's end; its final values (with `__interrupt__`), or `__error__`."""
        encoder = Encoder(frozenset(), row["run_id"], row["thread_id"], row["assistant_id"])
        async for event in self.events(tenant_id, row):
            if event is not None:
                encoder.parts(event)
        return encoder.result()

    async def events(self, tenant_id: str, row: dict[str, Any]) -> AsyncIterator[RunEvent | None]:
        """The run's events from the first; just its state when its events have expired."""
        # The stored status first: a run just created is not terminal, and its stream saves the
        # JetStream round trip of the look-up (issue 18).
        if row.get("status") in TERMINAL and await self.last_event(row["run_id"]) is None:
            state = await self.state(tenant_id, row["thread_id"])
            yield RunEvent(
                tenant_id=tenant_id,
                run_id=row["run_id"],
                thread_id=row["thread_id"],
                seq=0,
                type="values",
                data=state.current.values,
            )
            return
        async for event in self.gateway.events(tenant_id, row["run_id"]):
            yield event


def state_values(values: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = with_message_types(values)
    return result


def checkpoint_ref(thread_id: str, checkpoint_id: str | None) -> dict[str, Any] | None:
    if checkpoint_id is None:
        return None
    return {
        "thread_id": thread_id,
        "checkpoint_ns": "",
        "checkpoint_id": checkpoint_id,
        "checkpoint_map": None,
    }


def lg_state(thread_id: str, cp: Any) -> dict[str, Any]:
    """A ThreadCheckpoint as LangGraph's ThreadState."""
    interrupts = list(cp.interrupts)
    tasks = [
        {
            "id": f"{cp.checkpoint_id}:{name}",
            "name": name,
            "error": None,
            "interrupts": interrupts if i == 0 else [],
            "checkpoint": None,
            "state": None,
            "result": None,
        }
        for i, name in enumerate(cp.next)
    ]
    return {
        "values": state_values(cp.values),
        "next": list(cp.next),
        "checkpoint": checkpoint_ref(thread_id, cp.checkpoint_id)
        or {"thread_id": thread_id, "checkpoint_ns": "", "checkpoint_id": None},
        "metadata": cp.metadata,
        "created_at": cp.created_at.isoformat() if cp.created_at else None,
        "parent_checkpoint": checkpoint_ref(thread_id, cp.parent_checkpoint_id),
        "tasks": tasks,
        "interrupts": interrupts,
    }
