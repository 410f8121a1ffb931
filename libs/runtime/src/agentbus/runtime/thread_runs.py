"""One run at a time per thread, shared by every gateway replica and orchestrator: the NATS KV
bucket `thread_runs` (multitask strategies `reject | enqueue | interrupt | rollback`).

The key `<tenant>.<thread>` holds a `ThreadRuns` value: the active run (with its request, so it
can be published again), what was asked of it (`stop`), and the runs waiting their turn, in order.
Every change is a compare-and-set on the key's revision, so concurrent admissions on two gateway
replicas never both win, and a release never loses a run queued at the same moment.

- The gateway admits: a free thread gets the run as active and the run is published at once;
  a busy one rejects, queues it (`enqueue`), or queues it first and asks the active run to stop
  (`interrupt` -> RunControl interrupt, `rollback` -> RunControl cancel + rollback on release).
- The orchestrator releases when a run ends, whatever gateway submitted it: the next queued run
  becomes active and is published (`Nats-Msg-Id` = run id, so a repeated publish is dropped).
- A key whose active run ended without a release (its orchestrator died between the final event
  and the release) is released by the next admission that finds it; see `ThreadRunsKV.admit`.
- A run JetStream refuses to take (a stream or storage limit reached, no quorum, no stream) is
  not left active on its thread: the admission is undone and `RunNotAccepted` tells the caller,
  which answers 503 instead of leaving a thread busy with a run no orchestrator will ever see.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

from nats.errors import NoRespondersError
from nats.js.client import JetStreamContext
from nats.js.errors import (
    APIError,
    KeyDeletedError,
    KeyNotFoundError,
    KeyWrongLastSequenceError,
)
from nats.js.kv import KeyValue
from pydantic import BaseModel, Field

from agentbus.contracts import RunRequested
from agentbus.contracts import subjects as s
from agentbus.contracts.runs import MultitaskStrategy
from agentbus.contracts.streams import THREAD_RUNS

from .traces import nats_span, with_trace_context

StopAction = Literal["interrupt", "cancel", "rollback"]
Outcome = Literal["started", "queued", "rejected"]

log = logging.getLogger("agentbus.thread_runs")

# Compare-and-set retries before giving up (only under heavy contention on one thread).
MAX_ATTEMPTS = 50
# What a JetStream publish raises when the run was surely not stored: the stream said no (a
# limit reached, storage full, no quorum) or no stream listens. Not a timeout: the run may have
# been stored and only its ack lost, so its admission stands and the staleness check republishes
# it (Nats-Msg-Id makes that idempotent).
PUBLISH_REFUSED = (APIError, NoRespondersError)


class ThreadRuns(BaseModel):
    """The value under one thread's key."""

    active: RunRequested | None = None
    since: float = Field(default_factory=time.time, description="When `active` became active")
    stop: StopAction | None = Field(default=None, description="What was asked of `active`")
    queue: list[RunRequested] = Field(default_factory=list)
    traces: dict[str, dict[str, str]] = Field(
        default_factory=dict,
        description="Trace context of each queued run's request (run id -> W3C headers), so the "
        "run joins that request's trace when it is published later",
    )

    @property
    def busy(self) -> bool:
        return self.active is not None


@dataclass(frozen=True)
class Admission:
    outcome: Outcome
    # The run that holds the thread when the new one was admitted (rejected, queued or stopped).
    active_run_id: str | None = None
    position: int = 0


class ContentionError(RuntimeError):
    """The key changed under us MAX_ATTEMPTS times in a row."""


class RunNotAccepted(RuntimeError):
    """JetStream did not take the run (see PUBLISH_REFUSED); its admission was undone."""


def thread_runs_key(tenant_id: str, thread_id: str) -> str:
    # Both are subject tokens ([A-Za-z0-9_-]), valid KV key characters.
    return f"{tenant_id}.{thread_id}"


# Decides whether an active run is over although nobody released it; returns False to keep it.
StaleCheck = Callable[[ThreadRuns], Awaitable[bool]]


class ThreadRunsKV:
    def __init__(self, js: JetStreamContext, kv: KeyValue) -> None:
        self.js = js
        self.kv = kv

    @classmethod
    async def open(cls, js: JetStreamContext) -> ThreadRunsKV:
        return cls(js, await js.key_value(THREAD_RUNS.name))

    async def read(self, tenant_id: str, thread_id: str) -> tuple[ThreadRuns, int | None]:
        """The value and its revision (None when the key was never written or was deleted)."""
        try:
            entry = await self.kv.get(thread_runs_key(tenant_id, thread_id))
        except (KeyNotFoundError, KeyDeletedError):
            return ThreadRuns(), None
        if not entry.value:
            return ThreadRuns(), entry.revision
        return ThreadRuns.model_validate_json(entry.value), entry.revision

    async def _write(
        self, tenant_id: str, thread_id: str, value: ThreadRuns, revision: int | None
    ) -> bool:
        """Compare-and-set; False when someone else changed the key first."""
        key = thread_runs_key(tenant_id, thread_id)
        data = value.model_dump_json().encode()
        try:
            if revision is None:
                await self.kv.create(key, data)
            else:
                await self.kv.update(key, data, last=revision)
        except KeyWrongLastSequenceError:
            return False
        return True

    async def publish(self, run: RunRequested, trace: dict[str, str] | None = None) -> None:
        # The headers carry the trace context: the admitting request's when it was saved with a
        # queued run, else the current one.
        with nats_span(s.RUNS_SUBMIT, headers={"Nats-Msg-Id": run.run_id}, parent=trace) as headers:
            await self.js.publish(s.RUNS_SUBMIT, run.model_dump_json().encode(), headers=headers)

    async def admit(
        self, run: RunRequested, strategy: MultitaskStrategy, is_stale: StaleCheck
    ) -> Admission:
        """Admit `run` on its thread; publishes it when it can start now.

        `interrupt`/`rollback` put the run first in the queue and mark the active run's `stop`;
        the caller then sends the RunControl (after this write, so an orchestrator that picks the
        active run up later still sees the mark).
        """
        for _ in range(MAX_ATTEMPTS):
            value, revision = await self.read(run.tenant_id, run.thread_id)
            if value.active is not None and await is_stale(value):
                await self.release(run.tenant_id, run.thread_id, value.active.run_id)
                continue
            if value.active is None and not value.queue:
                new = ThreadRuns(active=run)
                if await self._write(run.tenant_id, run.thread_id, new, revision):
                    try:
                        await self.publish(run)
                    except PUBLISH_REFUSED as exc:
                        await self._undo_start(run)
                        raise RunNotAccepted(f"run {run.run_id} not accepted: {exc!r}") from exc
                    return Admission("started")
                continue
            active_id = value.active.run_id if value.active else None
            if strategy == "reject":
                return Admission("rejected", active_id)
            if strategy == "enqueue":
                new = value.model_copy(update={"queue": [*value.queue, run]})
                position = len(new.queue)
            else:
                stop: StopAction = "interrupt" if strategy == "interrupt" else "rollback"
                new = value.model_copy(update={"queue": [run, *value.queue], "stop": stop})
                position = 1
            new.traces = {**value.traces, run.run_id: with_trace_context()}
            if await self._write(run.tenant_id, run.thread_id, new, revision):
                return Admission("queued", active_id, position)
        raise ContentionError(f"thread {run.thread_id} is changing too fast to admit a run")

    async def _undo_start(self, run: RunRequested) -> None:
        """Free the thread a refused run was made active on. A run queued behind it meanwhile
        is started as usual; if JetStream refuses that one too, it stays active and the next
        admission's staleness check republishes it."""
        try:
            await self.release(run.tenant_id, run.thread_id, run.run_id)
        except (*PUBLISH_REFUSED, ContentionError):
            log.warning("undoing a refused run's admission", exc_info=True)

    async def mark_stop(
        self, tenant_id: str, thread_id: str, run_id: str, stop: StopAction
    ) -> Literal["active", "removed", "unknown"]:
        """Ask `run_id` to stop: mark it when active, drop it from the queue when waiting."""
        for _ in range(MAX_ATTEMPTS):
            value, revision = await self.read(tenant_id, thread_id)
            if value.active is not None and value.active.run_id == run_id:
                new = value.model_copy(update={"stop": stop})
                result: Literal["active", "removed", "unknown"] = "active"
            elif any(r.run_id == run_id for r in value.queue):
                queue = [r for r in value.queue if r.run_id != run_id]
                new = value.model_copy(update={"queue": queue})
                result = "removed"
            else:
                return "unknown"
            if await self._write(tenant_id, thread_id, new, revision):
                return result
        raise ContentionError(f"thread {thread_id} is changing too fast")

    async def release(
        self,
        tenant_id: str,
        thread_id: str,
        run_id: str,
        before_next: Callable[[ThreadRuns], Awaitable[None]] | None = None,
    ) -> RunRequested | None:
        """`run_id` is over: the next queued run becomes active and is published (returned).

        A no-op when `run_id` is not the active run (released already, or never admitted here).
        `before_next` runs first with the ending value (the orchestrator rolls checkpoints back
        there), so the next run only starts after it.
        """
        hooked = False
        for _ in range(MAX_ATTEMPTS):
            value, revision = await self.read(tenant_id, thread_id)
            if value.active is None or value.active.run_id != run_id:
                return None
            if before_next is not None and not hooked:
                await before_next(value)
                hooked = True
            if value.queue:
                nxt, rest = value.queue[0], value.queue[1:]
                waiting = {r.run_id for r in rest}
                traces = {k: v for k, v in value.traces.items() if k in waiting}
                new = ThreadRuns(active=nxt, queue=rest, traces=traces)
            else:
                nxt, new = None, ThreadRuns()
            if await self._write(tenant_id, thread_id, new, revision):
                if nxt is not None:
                    await self.publish(nxt, value.traces.get(nxt.run_id))
                return nxt
        raise ContentionError(f"thread {thread_id} is changing too fast to release a run")

    async def republish_active(self, tenant_id: str, thread_id: str, run_id: str) -> None:
        """Publish the active run again and restart its clock (its first publish may be lost)."""
        value, revision = await self.read(tenant_id, thread_id)
        if value.active is None or value.active.run_id != run_id:
            return
        if await self._write(
            tenant_id, thread_id, value.model_copy(update={"since": time.time()}), revision
        ):
            await self.publish(value.active)
