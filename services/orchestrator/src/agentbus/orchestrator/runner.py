"""Executes runs from the RUNS work queue: durable, resumable, cancellable, exactly once.

- The run's events continue from the last sequence number already in RUN_EVENTS, so a
  redelivered run never re-publishes a number (and the stream drops any it does re-send).
- Checkpoints carry the run id: a redelivered run whose checkpoints exist resumes from the last
  one (input None), one whose graph had finished only publishes its end, and one that never
  reached a checkpoint starts from its input — no run executes twice from the start.
- The message is acked only after the final `end` event is stored; `in_progress()` heartbeats
  keep JetStream from redelivering a long run to another replica meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from faststream.nats.message import NatsMessage
from langgraph.types import Command
from nats.aio.client import Client as NatsClient
from nats.js.errors import NotFoundError
from opentelemetry import trace
from prometheus_client import CollectorRegistry

from agentbus.contracts import RunControl, RunEvent, RunFinished, RunRequested
from agentbus.contracts import subjects as s
from agentbus.contracts.runs import RunStatus
from agentbus.contracts.streams import ORCHESTRATOR_RUNS, RUN_EVENTS, TELEMETRY
from agentbus.runtime.consuming import (
    Rejects,
    decode_or_reject,
    heartbeat,
    is_last_delivery,
    nak_delay,
)
from agentbus.runtime.logs import log_context
from agentbus.runtime.metrics import RunMetrics
from agentbus.runtime.outbox import Outbox
from agentbus.runtime.slots import WorkSlots
from agentbus.runtime.traces import nats_span, tracer

from .context import BUS_AWAY, BusUnavailable, RunCancelled, RunContext
from .graphs import Graphs, is_native
from .hosted_run import (
    NATIVE_MODES,
    USER_MODES,
    emit_user_part,
    run_config,
    to_json,
    user_context,
    user_input,
)
from .model_calls import ModelScope, model_scope
from .multitask import Multitask
from .run_errors import run_failure
from .tools import ToolBox

log = logging.getLogger("agentbus.orchestrator.runner")


def thread_key(tenant_id: str, thread_id: str) -> str:
    """Checkpoints are keyed per tenant: one tenant can never load another's thread."""
    return f"{tenant_id}:{thread_id}"


# A run past its time limit whose task ignores cancellation is left behind after this long: its
# `end` is published and its slot freed all the same.
CANCEL_GRACE_S = 5.0


@dataclass(frozen=True)
class RunLimits:
    """What one tenant's runs may take: time per run, and runs at once on this replica."""

    timeout_s: Callable[[str], float] = lambda _assistant: 900.0
    per_tenant: int | None = None


def graph_of(run: RunRequested) -> str:
    """The graph a run executes: its assistant's graph, or the graph named like the assistant."""
    return run.graph_id or run.assistant_id


class Runner:
    def __init__(
        self,
        nc: NatsClient,
        graphs: Graphs,
        router: Any,
        rejects: Rejects,
        instance: str = "",
        metrics: RunMetrics | None = None,
        limits: RunLimits | None = None,
        slots: WorkSlots | None = None,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.limits = limits or RunLimits()
        # The work slots the runs take (their consumer's): lent back while a run waits.
        self.slots = slots
        # Runs of each tenant executing on this replica (for the per-tenant cap), and runs
        # waiting here for one of their tenant's runs to end; notified whenever a run ends.
        self.by_tenant: Counter[str] = Counter()
        self.waiting: Counter[str] = Counter()
        self.run_ended = asyncio.Condition()
        self.instance = instance
        self.metrics = metrics
        self.nc = nc
        self.js = nc.jetstream()
        self.graphs = graphs
        self.router = router
        self.rejects = rejects
        self.active: dict[str, tuple[asyncio.Task[Any], RunContext]] = {}
        # One run at a time per thread (thread_runs KV); the graphs share one checkpointer.
        self.multitask = Multitask(self.js, graphs.checkpointer)
        # Telemetry and alerts the bus does not take are sent later, never the run's failure.
        self.outbox = Outbox(
            lambda subject, data, headers, _stream: self.publish(subject, data, headers), registry
        )

    async def publish(self, subject: str, data: bytes, headers: dict[str, str]) -> None:
        # Every event and telemetry message carries the trace context (analytics joins the trace),
        # in a producer span of its own unless the caller put the context in already (token
        # events: one per chunk, covered by the model call's span; a span each would cost more
        # than the publish, see bench/tracing_overhead.py).
        if "traceparent" in headers:
            await self.js.publish(subject, data, headers=headers)
            return
        with nats_span(subject, headers=headers) as traced:
            await self.js.publish(subject, data, headers=traced)

    async def _telemetry(self, subject: str, data: bytes) -> None:
        await self.outbox.send(subject, data, stream=TELEMETRY.name)

    async def last_event(self, run_id: str) -> RunEvent | None:
        try:
            msg = await self.js.get_last_msg(RUN_EVENTS.name, s.run_events(run_id))
        except NotFoundError:
            return None
        return RunEvent.model_validate_json(msg.data or b"{}")

    # -- control ---------------------------------------------------------------------------------

    async def control(self, body: bytes) -> None:
        try:
            ctl = RunControl.model_validate_json(body)
        except ValueError:
            self.rejects.count(s.RUN_CONTROL_ALL, "schema")
            return
        entry = self.active.get(ctl.run_id)
        if entry is None or entry[1].tenant_id != ctl.tenant_id:
            return  # not running here (another replica, or already over)
        task, ctx = entry
        # A user's graph has no node that pauses on request: an interrupt stops it, as
        # LangGraph's `interrupt` multitask strategy stops the earlier run.
        if ctl.action == "cancel" or not ctx.native:
            # Both: the flag stops the run at its next event even where a library swallows the
            # task cancellation; the cancel interrupts a node that is waiting.
            ctx.cancel_requested = True
            task.cancel()
        else:
            ctx.interrupt_reason = ctl.reason or "interrupt requested"

    # -- runs ------------------------------------------------------------------------------------

    async def handle(self, msg: NatsMessage) -> None:
        run = await decode_or_reject(msg, RunRequested, self.rejects)
        if run is None:
            return
        with log_context(run_id=run.run_id, tenant_id=run.tenant_id):
            if graph_of(run) not in self.graphs:
                log.warning(
                    "rejected message",
                    extra={"reason": "unknown_assistant", "assistant_id": run.assistant_id},
                )
                self.rejects.count(s.RUNS_SUBMIT, "unknown_assistant")
                ctx = self._context(run, await self.last_event(run.run_id))
                missing = (
                    f"graph {run.graph_id!r}" if run.graph_id else f"assistant {run.assistant_id!r}"
                )
                await ctx.emit("error", {"message": f"unknown {missing}", "reason": "not_found"})
                await ctx.emit("end", {"reason": "unknown assistant"}, status="error")
                await self._release(run)
                await msg.ack()
                return
            cap = self.limits.per_tenant
            if cap is not None and self.by_tenant[run.tenant_id] >= cap:
                if not await self._wait_for_room(msg, run.tenant_id, cap):  # counts the run
                    await self._over_tenant_cap(msg, run, cap)
                    return
            else:
                # Counted before any await: concurrent handlers see each other's runs.
                self.by_tenant[run.tenant_id] += 1
            try:
                await self._handle(msg, run)
            finally:
                self.by_tenant[run.tenant_id] -= 1
                if self.by_tenant[run.tenant_id] <= 0:
                    del self.by_tenant[run.tenant_id]
                async with self.run_ended:
                    self.run_ended.notify_all()

    async def _wait_for_room(self, msg: NatsMessage, tenant_id: str, cap: int) -> bool:
        """Wait, heartbeating and without holding a work slot, until one of the tenant's runs on
        this replica ends; True when the run may start, already counted in `by_tenant`.

        A waiting run starts the moment its tenant has room, where the NAK delays alone (2 s,
        then 10 s...) kept a burst of one tenant waiting for the timer and refused it after the
        last redelivery (bench/README.md, issue 18). The slot is lent back while it waits, so
        other tenants' runs take it meanwhile. Bounded: at most `cap` runs of a tenant, and as
        many runs in all as the replica has slots, wait like this; further ones go back to the
        stream with a NAK delay, where another replica may take them.
        """
        slots = self.slots
        if slots is None or self.waiting[tenant_id] >= cap:
            return False
        if sum(self.waiting.values()) >= slots.size:
            return False
        self.waiting[tenant_id] += 1
        counted = False
        try:
            async with heartbeat(msg, ORCHESTRATOR_RUNS), slots.lent(), self.run_ended:
                await self.run_ended.wait_for(lambda: self.by_tenant[tenant_id] < cap)
                # Counted under the condition's lock: two waiters never take one place.
                self.by_tenant[tenant_id] += 1
                counted = True
            return True
        except BaseException:
            if counted:  # cancelled while taking a slot back: the run never started here
                self.by_tenant[tenant_id] -= 1
            raise
        finally:
            self.waiting[tenant_id] -= 1
            if self.waiting[tenant_id] <= 0:
                del self.waiting[tenant_id]

    async def _over_tenant_cap(self, msg: NatsMessage, run: RunRequested, cap: int) -> None:
        """The tenant already runs `cap` runs here: wait (NAK with the consumer's delays, so
        other tenants' runs take the slot meanwhile), and on the last delivery refuse."""
        if not is_last_delivery(msg, ORCHESTRATOR_RUNS):
            log.info("tenant at its run limit; run waits", extra={"limit": cap})
            await msg.nack(delay=nak_delay(msg, ORCHESTRATOR_RUNS))
            return
        log.warning("rejected message", extra={"reason": "tenant_run_limit", "limit": cap})
        self.rejects.count(s.RUNS_SUBMIT, "tenant_run_limit")
        ctx = self._context(run, await self.last_event(run.run_id))
        message = f"too many active runs for this tenant (limit {cap} per replica)"
        await ctx.emit("error", {"message": message, "reason": "tenant_run_limit"})
        await ctx.emit("end", {"reason": "tenant_run_limit"}, status="error")
        await self._release(run)
        await msg.ack()

    async def _handle(self, msg: NatsMessage, run: RunRequested) -> None:
        # One span per run attempt, a child of the consume span (the gateway's trace).
        with tracer().start_as_current_span(
            f"invoke_agent {run.assistant_id}",
            attributes={
                "gen_ai.operation.name": "invoke_agent",
                "gen_ai.agent.name": run.assistant_id,
                "agentbus.run_id": run.run_id,
                "agentbus.thread_id": run.thread_id,
                "agentbus.tenant_id": run.tenant_id,
            },
        ) as span:
            try:
                async with heartbeat(msg, ORCHESTRATOR_RUNS):
                    status = await self._execute_through_outage(msg, run)
            except BusUnavailable:
                # Not the graph's failure: back to the stream, resumed from its checkpoint by
                # whichever replica takes it (its events so far are kept; seq goes on).
                log.warning("run events could not be published; the run is retried")
                span.set_attribute("agentbus.run_status", "retried")
                with contextlib.suppress(Exception):  # unacked, it comes back after ack_wait
                    await msg.nack(delay=nak_delay(msg, ORCHESTRATOR_RUNS))
                return
            span.set_attribute("agentbus.run_status", status)
            # Carries the trace, span, run and tenant ids like every line of the run.
            log.info("run finished", extra={"status": status})
        await self._release(run)
        await msg.ack()

    def _context(self, run: RunRequested, last: RunEvent | None) -> RunContext:
        ctx = RunContext(
            run=run,
            publish=self.publish,
            router=self.router,
            tools=ToolBox(self.nc, outbox=self.outbox),
            next_seq=(last.seq + 1) if last else 0,
            resume_pending=run.command is not None and "resume" in run.command,
            metrics=self.metrics,
            telemetry=self._telemetry,
        )
        span = trace.get_current_span().get_span_context()
        if span.is_valid:
            ctx.trace_id = format(span.trace_id, "032x")
        return ctx

    async def _execute_through_outage(self, msg: NatsMessage, run: RunRequested) -> RunStatus:
        """`execute`, and on the consumer's last delivery its retries while the bus is away.

        A run whose events the bus does not take goes back to the stream (BusUnavailable, NAK
        with the consumer's delays) so any replica resumes it. On the last delivery a NAK would
        leave it to no one: JetStream delivers it no more, and its readers wait for an `end`
        that never comes. So the last delivery stays here, kept alive by the heartbeat, and
        resumes from its checkpoint at the longest NAK delay until the bus takes its events.
        """
        while True:
            try:
                return await self.execute(run)
            except (BusUnavailable, *BUS_AWAY) as exc:
                if not is_last_delivery(msg, ORCHESTRATOR_RUNS):
                    if isinstance(exc, BusUnavailable):
                        raise
                    raise BusUnavailable(f"the bus is away: {exc!r}") from exc
                wait = (ORCHESTRATOR_RUNS.nak_delays_s or (1.0,))[-1]
                log.warning(
                    "run events not published on the run's last delivery; retried here",
                    extra={"retry_in_s": wait},
                )
                await asyncio.sleep(wait)

    async def execute(self, run: RunRequested) -> RunStatus:
        last = await self.last_event(run.run_id)
        if last is not None and last.type == "end":
            log.info("run already finished; acking the redelivery")
            return last.status or "success"
        ctx = self._context(run, last)
        task = asyncio.create_task(self._drive(run, ctx, resuming=last is not None))
        self.active[run.run_id] = (task, ctx)
        await self._apply_pending_stop(run, ctx, task)
        running = self.metrics.running(graph_of(run)) if self.metrics else contextlib.nullcontext()
        try:
            with running:
                status = await self._within_limit(run, ctx, task)
        except asyncio.CancelledError:
            if not task.cancelled():
                raise  # this worker is shutting down: leave the run for redelivery
            status = "cancelled"
            await ctx.emit("end", {"reason": "cancelled"}, status=status)
        finally:
            self.active.pop(run.run_id, None)
            ctx.end_spans()
        if self.metrics is not None:
            self.metrics.finished(graph_of(run), status, time.perf_counter() - ctx.started)
        await self._finished(run, ctx, status)
        return status

    async def _within_limit(
        self, run: RunRequested, ctx: RunContext, task: asyncio.Task[RunStatus]
    ) -> RunStatus:
        """The run's status, or `error` (reason `timeout`) once it runs past its time limit."""
        # Limits and metric labels go by graph: assistants are many (uuids), graphs few.
        limit = self.limits.timeout_s(graph_of(run))
        try:
            done, _ = await asyncio.wait({task}, timeout=limit)
        except asyncio.CancelledError:
            task.cancel()  # this worker is stopping: the run goes with it, as with `await task`
            raise
        if done:
            return task.result()
        log.warning("run exceeded its time limit", extra={"limit_s": limit})
        ctx.timed_out_after = limit
        ctx.cancel_requested = True
        task.cancel()
        await asyncio.wait({task}, timeout=CANCEL_GRACE_S)
        if not ctx.ended:
            await ctx.emit("end", {"reason": "timeout"}, status="error")
        return "error"

    async def _drive(self, run: RunRequested, ctx: RunContext, *, resuming: bool) -> RunStatus:
        graph_id = graph_of(run)
        config = run_config(run, thread_key(run.tenant_id, run.thread_id), graph_id)
        # Model calls of this run know its tenant (cache keys) and thread (trace sessions).
        scope = ModelScope(run.tenant_id, run.thread_id, run.run_id, run.assistant_id)
        try:
            with model_scope(scope):
                async with self.graphs.open(graph_id, config, run.tenant_id) as graph:
                    return await self._drive_graph(graph, config, run, ctx, resuming=resuming)
        except (RunCancelled, asyncio.CancelledError, BusUnavailable):
            raise
        except Exception:  # a factory that fails: the run's error, not the replica's
            if ctx.ended:
                raise
            log.exception("graph factory failed")
            # A reason code for the caller; the exception's text stays in the log (issue 13).
            await ctx.emit("error", run_failure("graph_unavailable"))
            await ctx.emit("end", {"reason": "error"}, status="error")
            return "error"

    async def _drive_graph(
        self,
        graph: Any,
        config: dict[str, Any],
        run: RunRequested,
        ctx: RunContext,
        *,
        resuming: bool,
    ) -> RunStatus:
        native = ctx.native = is_native(graph)
        # A user's graph gets LangGraph's semantics: no input continues the thread (after a
        # breakpoint, or from a checkpoint); the built-in graphs always start from an input.
        graph_input: Any = (
            self._input(run) if native else user_input(self._input(run, none_continues=True))
        )
        if resuming:
            snapshot = await graph.aget_state(config)
            if snapshot.metadata and snapshot.metadata.get("run_id") == run.run_id:
                if not snapshot.next:
                    graph_input = None  # finished before the crash: only the end is missing
                    return await self._end(graph, config, ctx, skip_graph=True)
                graph_input = None  # resume from the last checkpoint of this run
                log.info("resuming run from its last checkpoint")
        else:
            await ctx.emit(
                "metadata",
                {
                    "run_id": run.run_id,
                    "thread_id": run.thread_id,
                    "assistant_id": run.assistant_id,
                    "instance": self.instance,
                },
            )
        try:
            subgraphs = run.stream_subgraphs and not native
            async for item in graph.astream(
                graph_input,
                config,
                context=ctx if native else user_context(graph, run),
                stream_mode=NATIVE_MODES if native else USER_MODES,
                interrupt_before=run.interrupt_before,
                interrupt_after=run.interrupt_after,
                subgraphs=subgraphs,
            ):
                namespace, (mode, chunk) = (list(item[0]), item[1:]) if subgraphs else ([], item)
                if namespace:  # a subgraph's part, named by its namespace
                    await emit_user_part(ctx, mode, chunk, namespace)
                elif mode == "updates" and "updates" in run.stream_modes:
                    await ctx.emit("updates", to_json(chunk))
                elif mode == "values" and "values" in run.stream_modes:
                    await ctx.emit("values", to_json(chunk))
                elif mode not in ("updates", "values"):
                    await emit_user_part(ctx, mode, chunk)
        except RunCancelled:
            await ctx.emit("end", {"reason": "cancelled"}, status="cancelled")
            return "cancelled"
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if ctx.bus_failed:
                raise BusUnavailable("the run's events could not be published") from exc
            if ctx.cancel_requested:
                await ctx.emit("end", {"reason": "cancelled"}, status="cancelled")
                return "cancelled"
            log.exception("run failed")
            await ctx.emit("error", run_failure("graph_error"))
            await ctx.emit("end", {"reason": "error"}, status="error")
            return "error"
        return await self._end(graph, config, ctx)

    def _input(self, run: RunRequested, *, none_continues: bool = False) -> Any:
        if run.command is not None:
            return Command(resume=run.command.get("resume"), update=run.command.get("update"))
        if run.input is None and (run.checkpoint_id or none_continues):
            return None  # run on from the checkpoint (regenerate), no new input
        return run.input or {}

    async def _end(
        self, graph: Any, config: dict[str, Any], ctx: RunContext, *, skip_graph: bool = False
    ) -> RunStatus:
        if ctx.cancel_requested:
            await ctx.emit("end", {"reason": "cancelled"}, status="cancelled")
            return "cancelled"
        # The thread's head now, not the checkpoint a forked run started from.
        latest = {
            **config,
            "configurable": {
                k: v for k, v in config["configurable"].items() if k != "checkpoint_id"
            },
        }
        snapshot = await graph.aget_state(latest)
        interrupts = [to_json(i.value) for task in snapshot.tasks for i in task.interrupts]
        values = ctx.final_values = to_json(snapshot.values)
        if skip_graph:
            await ctx.emit("values", values)
        if interrupts or snapshot.next:
            # An interrupt() or a breakpoint (interrupt_before/after): paused, not finished.
            await ctx.emit("end", {"interrupts": interrupts}, status="interrupted")
            return "interrupted"
        answer = ""
        messages = values.get("messages") if isinstance(values, dict) else None
        if messages and isinstance(messages[-1], dict):
            answer = str(messages[-1].get("content") or "")
        await ctx.emit(
            "end",
            {
                "answer": answer,
                "citations": values.get("citations", []) if isinstance(values, dict) else [],
            },
            status="success",
        )
        return "success"

    async def _finished(self, run: RunRequested, ctx: RunContext, status: RunStatus) -> None:
        from .recorded import answer_and_contexts, question_of

        # What was asked, answered and retrieved, so `agentbus eval` can judge the run later.
        answer: str | None = None
        contexts: list[str] = []
        if status == "success" and isinstance(ctx.final_values, dict):
            with contextlib.suppress(Exception):  # telemetry never fails a finished run
                answer, contexts = answer_and_contexts(ctx.final_values)
        finished = RunFinished(
            tenant_id=run.tenant_id,
            run_id=run.run_id,
            thread_id=run.thread_id,
            assistant_id=run.assistant_id,
            status=status,
            duration_ms=(time.perf_counter() - ctx.started) * 1e3,
            node_count=ctx.nodes,
            tool_count=ctx.tool_calls,
            trace_id=ctx.trace_id,
            question=question_of(run.input),
            answer=answer,
            contexts=contexts,
        )
        await self._telemetry(s.TELEMETRY_RUN_FINISHED, finished.model_dump_json().encode())

    # -- one run per thread ----------------------------------------------------------------------

    async def _apply_pending_stop(
        self, run: RunRequested, ctx: RunContext, task: asyncio.Task[Any]
    ) -> None:
        """A stop asked while the run waited in the queue (its RunControl found no one)."""
        try:
            stop = await self.multitask.pending_stop(run)
        except Exception:
            log.warning("thread_runs unreadable; no pending stop applied", exc_info=True)
            return
        if stop == "interrupt":
            ctx.interrupt_reason = "interrupted by a newer run on the thread"
        elif stop is not None:
            ctx.cancel_requested = True
            task.cancel()

    async def _release(self, run: RunRequested) -> None:
        """Let the thread's next run start (the gateways' admission also frees a stale key)."""
        try:
            await self.multitask.release(run, thread_key(run.tenant_id, run.thread_id))
        except Exception:
            log.warning("could not release the thread's run", exc_info=True)
