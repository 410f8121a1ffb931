"""Runs as the gateway sees them: submit to the RUNS queue, stream events back from RUN_EVENTS.

Events are read from JetStream, not from the process that submitted the run, so a client that
reconnects with Last-Event-ID to any gateway replica gets the rest of the run.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from nats.aio.client import Client as NatsClient
from opentelemetry import trace
from prometheus_client import CollectorRegistry

from agentbus.contracts import RunControl, RunEvent, RunRequested, new_id
from agentbus.contracts import subjects as s
from agentbus.contracts.runs import MultitaskStrategy, StreamMode
from agentbus.runtime.metrics import StreamMetrics
from agentbus.runtime.thread_runs import PUBLISH_REFUSED, RunNotAccepted
from agentbus.runtime.traces import nats_span

from .limits import OpenStreams
from .run_events import RunEventFeed
from .store import GatewayStore
from .upstream import runs_unavailable

HEARTBEAT_S = 15.0


class StreamUnavailable(RuntimeError):
    """A run's events cannot be followed right now (NATS refused the subscription)."""


class RunGateway:
    def __init__(
        self,
        nc: NatsClient,
        store: GatewayStore,
        streams: StreamMetrics | None = None,
        heartbeat_s: float = HEARTBEAT_S,
        open_streams: OpenStreams | None = None,
    ) -> None:
        self.nc = nc
        # Followed runs per tenant (each a NATS subscription): TooManyStreams past the cap.
        self.open_streams = open_streams or OpenStreams(per_tenant=1000)
        # Proxies close idle connections; a comment this often keeps an SSE stream open.
        self.heartbeat_s = heartbeat_s
        self.js = nc.jetstream()
        self.store = store
        # Open SSE streams (a gauge in the service's registry; a private one when not given).
        self.streams = streams or StreamMetrics(CollectorRegistry())
        # Called with (tenant_id, end event) when a followed run ends (the query history).
        self.on_end: list[Callable[[str, RunEvent], Awaitable[None]]] = []

    async def submit(
        self,
        tenant_id: str,
        thread_id: str,
        *,
        input: dict[str, Any] | None = None,
        command: dict[str, Any] | None = None,
        assistant_id: str = "agent",
        stream_modes: list[StreamMode] | None = None,
        multitask_strategy: MultitaskStrategy = "reject",
        metadata: dict[str, Any] | None = None,
        user_id: str | None = None,
        admit: Callable[[RunRequested], Awaitable[object]] | None = None,
    ) -> RunRequested:
        """Record and publish a run; with `admit`, that decides when it is published."""
        run = RunRequested(
            tenant_id=tenant_id,
            run_id=new_id(),
            thread_id=thread_id,
            assistant_id=assistant_id,
            input=input,
            command=command,
            stream_modes=stream_modes or ["values"],
            multitask_strategy=multitask_strategy,
            metadata=metadata or {},
            user_id=user_id,
        )
        await self.store.create_run(tenant_id, run.run_id, thread_id, assistant_id, run.metadata)
        # The request's span gets the ids (so `agentbus traces --run` finds it); the publish
        # carries the trace context, so the orchestrator's spans join this trace.
        trace.get_current_span().set_attributes(
            {"agentbus.run_id": run.run_id, "agentbus.tenant_id": tenant_id}
        )
        try:
            if admit is not None:
                await admit(run)
                return run
            with nats_span(s.RUNS_SUBMIT, headers={"Nats-Msg-Id": run.run_id}) as headers:
                await self.js.publish(
                    s.RUNS_SUBMIT, run.model_dump_json().encode(), headers=headers
                )
        except (RunNotAccepted, *PUBLISH_REFUSED) as exc:
            await self.store.finish_run(tenant_id, run.run_id, "error")
            raise runs_unavailable(repr(exc)) from None
        return run

    async def cancel(self, tenant_id: str, run_id: str) -> None:
        ctl = RunControl(tenant_id=tenant_id, run_id=run_id, action="cancel")
        subject = s.run_control(run_id)
        with nats_span(subject) as headers:
            await self.nc.publish(subject, ctl.model_dump_json().encode(), headers=headers)

    async def open_events(
        self, tenant_id: str, run_id: str, *, after: int = -1
    ) -> AsyncIterator[RunEvent | None]:
        """`events`, subscribed before it returns: an SSE response must not start (200 and
        headers sent) for a stream that cannot be read (RUN_EVENTS not answering).

        Raises TooManyStreams (429) or StreamUnavailable.
        """
        self.open_streams.claim(tenant_id)
        try:
            sub = await self._subscribe(run_id)
        except Exception as exc:
            self.open_streams.release(tenant_id)
            raise StreamUnavailable(f"cannot follow run {run_id}: {exc}") from None
        return self._events(sub, tenant_id, run_id, after, None)

    async def _subscribe(self, run_id: str) -> RunEventFeed:
        feed = RunEventFeed(self.nc, run_id)
        await feed.open()
        return feed

    async def events(
        self, tenant_id: str, run_id: str, *, after: int = -1, heartbeat: float | None = None
    ) -> AsyncIterator[RunEvent | None]:
        """The run's events with seq > `after`, until `end`; None marks a heartbeat interval."""
        self.open_streams.claim(tenant_id)
        try:
            sub = await self._subscribe(run_id)
        except BaseException:
            self.open_streams.release(tenant_id)
            raise
        async for event in self._events(sub, tenant_id, run_id, after, heartbeat):
            yield event

    async def _events(
        self,
        feed: RunEventFeed,
        tenant_id: str,
        run_id: str,
        after: int,
        heartbeat: float | None,
    ) -> AsyncIterator[RunEvent | None]:
        try:
            while True:
                stored = await feed.next(heartbeat or self.heartbeat_s)
                if stored is None:
                    yield None
                    continue
                event = RunEvent.model_validate_json(stored.data)
                if event.tenant_id != tenant_id:
                    return  # never another tenant's events, whatever the id
                if event.seq > after:
                    yield event
                if event.type == "end":
                    if event.status:
                        await self.store.finish_run(tenant_id, run_id, event.status)
                    for hook in self.on_end:
                        await hook(tenant_id, event)
                    return
        finally:
            self.open_streams.release(tenant_id)
            await feed.close()
