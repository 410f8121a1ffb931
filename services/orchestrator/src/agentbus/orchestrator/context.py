"""What a graph node may use during one run: the event stream, models, tools and steering.

Passed as LangGraph's run context (never checkpointed). Events go straight to JetStream in order,
each with the next sequence number and `Nats-Msg-Id = run_id:seq`, so a redelivered run that
re-sends a number is deduplicated by the stream.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from contextvars import ContextVar, Token
from dataclasses import dataclass, field
from typing import Any

import nats.errors
import nats.js.errors
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Span

from agentbus.contracts import LlmUsage, RunEvent, RunRequested, ToolCalled
from agentbus.contracts.runs import RunEventType, RunStatus
from agentbus.runtime.metrics import RunMetrics
from agentbus.runtime.traces import tracer, with_trace_context

from .model_calls import ModelCall
from .tools import ToolBox

Publish = Callable[[str, bytes, dict[str, str]], Awaitable[None]]


_NODE_SPAN: ContextVar[tuple[Span, Token[Context]] | None] = ContextVar(
    "agentbus_node_span", default=None
)


class RunCancelled(Exception):
    """Raised at the next event of a run whose cancellation was requested."""


# What an event publish raises while the bus is away for a while: no answer, no stream leader,
# a connection being re-made. Not a refusal that would repeat (an event over the size limit):
# that one still ends the run as an error rather than being retried until max_deliver.
BUS_AWAY = (
    nats.errors.TimeoutError,
    nats.errors.NoRespondersError,
    nats.errors.ConnectionClosedError,
    nats.errors.ConnectionReconnectingError,
    nats.errors.StaleConnectionError,
    nats.js.errors.ServiceUnavailableError,
    nats.js.errors.NoStreamResponseError,
)


class BusUnavailable(RuntimeError):
    """A run event could not be published (the stream lost its leader, or NATS is away). The
    run is not over: it goes back to the stream and resumes from its checkpoint, rather than
    ending as the graph's error (which the bus might accept a second later)."""


@dataclass
class RunContext:
    run: RunRequested
    publish: Publish
    router: Any
    tools: ToolBox
    next_seq: int = 0
    nodes: int = 0
    tool_calls: int = 0
    # Set by a RunControl `cancel`: the run stops at its next event (and its task is cancelled).
    cancel_requested: bool = False
    # Set by a RunControl `interrupt`: the next node pauses the run.
    interrupt_reason: str | None = None
    # A run started with a resume command: the first node to ask gets the value.
    resume_pending: bool = False
    started: float = field(default_factory=time.perf_counter)
    trace_id: str | None = None
    metrics: RunMetrics | None = None
    # The replica's outbox for telemetry (runtime/outbox.py): a record the bus does not take is
    # sent later, never the run's failure. Without one (tests of a bare context), published.
    telemetry: Callable[[str, bytes], Awaitable[None]] | None = None
    # LangGraph node spans started and not yet ended (node_start .. node_end).
    _spans: list[Span] = field(default_factory=list)
    # Emits take turns: two in flight at once (a node's event and the cancel path's `end`) would
    # share a seq, and the stream's dedupe would drop the second as a repeat: a lost `end`.
    _emitting: asyncio.Lock = field(default_factory=asyncio.Lock)
    # After `end` nothing more is published: `end` is a run's last event for every reader.
    ended: bool = False
    # Set when the run passed its time limit (seconds): whichever path stops it, its `end` is an
    # `error` with reason `timeout`, after an `error` event saying so.
    timed_out_after: float | None = None
    # A built-in graph (its nodes use this context); False for a user's graph.
    native: bool = True
    # The state at the run's end, for the RunFinished record.
    final_values: Any = None
    # An event could not be published: whatever the graph library makes of the exception, the
    # runner retries the run instead of ending it.
    bus_failed: bool = False

    @property
    def tenant_id(self) -> str:
        return self.run.tenant_id

    async def emit(
        self,
        type_: RunEventType,
        data: dict[str, Any] | None = None,
        *,
        node: str | None = None,
        status: RunStatus | None = None,
        namespace: list[str] | None = None,
    ) -> RunEvent:
        async with self._emitting:
            return await self._emit(type_, data, node, status, namespace)

    async def _emit(
        self,
        type_: RunEventType,
        data: dict[str, Any] | None,
        node: str | None,
        status: RunStatus | None,
        namespace: list[str] | None = None,
    ) -> RunEvent:
        if self.cancel_requested and type_ != "end":
            raise RunCancelled(self.run.run_id)
        if self.ended and type_ != "end":
            raise RunCancelled(self.run.run_id)
        if type_ == "end" and self.timed_out_after is not None and not self.ended:
            limit = self.timed_out_after
            message = f"the run exceeded its time limit of {limit:g} s"
            await self._send("error", {"message": message, "reason": "timeout"}, None, None)
            data, status = {"reason": "timeout", "limit_s": limit}, "error"
        return await self._send(type_, data, node, status, namespace)

    async def _send(
        self,
        type_: RunEventType,
        data: dict[str, Any] | None,
        node: str | None,
        status: RunStatus | None,
        namespace: list[str] | None = None,
    ) -> RunEvent:
        event = RunEvent(
            tenant_id=self.run.tenant_id,
            run_id=self.run.run_id,
            thread_id=self.run.thread_id,
            seq=self.next_seq,
            type=type_,
            node=node,
            data=data or {},
            status=status,
            namespace=namespace or None,
        )
        if self.ended:
            return event  # a second `end` changes nothing for readers: not published
        from agentbus.contracts import subjects as s

        headers = {"Nats-Msg-Id": f"{self.run.run_id}:{self.next_seq}"}
        if type_ == "token":
            headers = with_trace_context(headers)  # no span per token (see Runner.publish)
        sending = asyncio.ensure_future(
            self.publish(s.run_events(self.run.run_id), event.model_dump_json().encode(), headers)
        )
        try:
            await asyncio.shield(sending)
        except asyncio.CancelledError:
            # The run's task was cancelled mid-publish, but the event may already be stored:
            # finish it first, or the cancel path's `end` would reuse its seq and be deduped.
            await asyncio.wait({sending})
            if not sending.cancelled() and sending.exception() is None:
                self.next_seq += 1
            raise
        except BUS_AWAY as exc:
            self.bus_failed = True
            raise BusUnavailable(f"event {event.seq} not published: {exc!r}") from exc
        self.next_seq += 1
        if type_ == "end":
            self.ended = True
        return event

    async def node_start(self, node: str, namespace: list[str] | None = None) -> None:
        self.nodes += 1
        # The node's span stays current until node_end (same coroutine), so the node's model
        # calls, tool requests and events are its children.
        # The span lives in a context variable of the node's own context, so nodes running in
        # parallel each end their own.
        span = tracer().start_span(
            f"node {node}", attributes={"langgraph.node": node, "agentbus.run_id": self.run.run_id}
        )
        self._spans.append(span)
        _NODE_SPAN.set((span, otel_context.attach(trace.set_span_in_context(span))))
        await self.emit("node_start", node=node, namespace=namespace)

    async def node_end(self, node: str, namespace: list[str] | None = None) -> None:
        await self.emit("node_end", node=node, namespace=namespace)
        entry = _NODE_SPAN.get()
        if entry is not None:
            span, token = entry
            _NODE_SPAN.set(None)
            otel_context.detach(token)
            span.end()
            if span in self._spans:
                self._spans.remove(span)

    def end_spans(self) -> None:
        """End node spans a node left open (it raised, was interrupted or cancelled)."""
        while self._spans:
            span = self._spans.pop()
            span.set_attribute("langgraph.node.completed", False)
            span.end()

    def token_sink(
        self, node: str, namespace: list[str] | None = None
    ) -> Callable[[str], Awaitable[None]]:
        async def sink(text: str) -> None:
            await self.emit("token", {"text": text}, node=node, namespace=namespace)

        return sink

    async def model_used(
        self,
        node: str,
        call: ModelCall,
        *,
        details: dict[str, Any] | None = None,
        namespace: list[str] | None = None,
    ) -> None:
        """Metrics, the `model_selection` event (plus `details`: e.g. the task type and why
        this group) and the usage telemetry of one model call."""
        if self.metrics is not None:
            self.metrics.model_call(
                call.model or call.group,
                call.input_tokens,
                call.output_tokens,
                call.cost_usd,
                call.latency_ms / 1e3,
                cache_hit=call.cache_hit,
                fallback=call.fallback,
            )
        selection: dict[str, Any] = {
            "group": call.group,
            "model": call.model,
            "provider": call.provider,
            "fallback": call.fallback,
            "served_group": call.served_group or call.group,
            "cache_hit": call.cache_hit is not None,
            # The call's tokens ride on the run's own events: the OpenAI adapter sums a run's
            # usage from them instead of listening to every tenant's telemetry.
            "usage": {
                "input_tokens": call.input_tokens,
                "output_tokens": call.output_tokens,
                "cached_tokens": call.cached_tokens,
            },
        }
        if call.cache_hit:
            selection["cache"] = call.cache_hit  # exact or semantic
            if call.cache_similarity is not None:
                selection["cache_similarity"] = call.cache_similarity
        await self.emit(
            "model_selection", {**selection, **(details or {})}, node=node, namespace=namespace
        )
        usage = LlmUsage(
            tenant_id=self.tenant_id,
            run_id=self.run.run_id,
            thread_id=self.run.thread_id,
            assistant_id=self.run.assistant_id,
            model=call.model or call.group,
            provider=call.provider or "unknown",
            input_tokens=call.input_tokens,
            output_tokens=call.output_tokens,
            cached_tokens=call.cached_tokens,
            cost_usd=call.cost_usd,
            latency_ms=call.latency_ms,
            ttft_ms=call.ttft_ms,
            streamed=True,
            trace_id=self.trace_id,
            cache_hit=call.cache_hit is not None,
        )
        from agentbus.contracts import subjects as s

        await self.send_telemetry(s.TELEMETRY_LLM_USAGE, usage.model_dump_json().encode())

    async def send_telemetry(self, subject: str, data: bytes) -> None:
        if self.telemetry is not None:
            await self.telemetry(subject, data)
        else:
            await self.publish(subject, data, {})

    async def tool_used(self, tool: str, duration_ms: float, error: str | None) -> None:
        self.tool_calls += 1
        called = ToolCalled(
            tenant_id=self.tenant_id,
            run_id=self.run.run_id,
            tool=tool,
            duration_ms=duration_ms,
            ok=error is None,
            error=error,
            trace_id=self.trace_id,
        )
        from agentbus.contracts import subjects as s

        await self.send_telemetry(s.TELEMETRY_TOOL_CALLED, called.model_dump_json().encode())
