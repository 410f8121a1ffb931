"""The orchestrator's broker app: runs from the RUNS queue, run control, thread state."""

from __future__ import annotations

import logging
from typing import Any

from faststream import AckPolicy
from faststream.nats import JStream, PullSub
from faststream.nats.annotations import NatsMessage
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from langgraph.store.postgres.aio import AsyncPostgresStore
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from agentbus.contracts import (
    GRAPHS_DESCRIBE,
    STORE_OPS,
    THREADS_UPDATE,
    ErrorReply,
    GraphDescribeRequest,
    GraphDescription,
    StoreReply,
    StoreRequest,
    ThreadState,
    ThreadStateRequest,
    ThreadUpdated,
    ThreadUpdateRequest,
)
from agentbus.contracts import subjects as s
from agentbus.contracts.streams import ORCHESTRATOR_RUNS
from agentbus.runtime.consuming import parse_or_error
from agentbus.runtime.metrics import RunMetrics
from agentbus.runtime.models.embeddings import warm_up
from agentbus.runtime.provisioning import consumer_config
from agentbus.runtime.service import Service, StartupError, new_service
from agentbus.runtime.slots import WorkSlots

from . import __version__, graph_config, graphs
from .describe import describe
from .diagnostics import drop_diagnostics
from .model_cache import open_cache
from .model_spans import capture_content
from .models import ModelConfigError, attach_cache, cache_config, load_router
from .runner import RunLimits, Runner
from .settings import OrchestratorSettings
from .store_ops import store_index, store_op
from .thread_ops import thread_update
from .threads import thread_state

log = logging.getLogger("agentbus.orchestrator.app")


def build(settings: OrchestratorSettings) -> Service:
    service = new_service(
        "orchestrator",
        __version__,
        settings,
        description="Executes LangGraph runs from the RUNS work queue and streams their events",
    )
    # Postgres holds the LangGraph checkpoints.
    service.checks.update(service.probes.checks("postgres"))
    try:
        router = load_router(settings.models_config)
    except ModelConfigError as exc:
        raise StartupError(f"invalid model config: {exc}") from None
    capture_content(settings.trace_model_content)
    try:
        graphs_config = graph_config.load(settings.langgraph_config)
    except graph_config.GraphConfigError as exc:
        raise StartupError(f"invalid graph config: {exc}") from None
    if not settings.diagnostic_assistants:
        drop_diagnostics(graphs_config)
    # The config's env is in place before any graph module is imported.
    graph_config.apply_environment(graphs_config)
    try:
        # Imported (and compiled) now: a graph that cannot load stops start-up here.
        hosted = graphs.load(graphs_config, None, None)
    except graphs.GraphLoadError as exc:
        raise StartupError(str(exc)) from None
    state: dict[str, Any] = {}
    slots = WorkSlots(settings.max_concurrent_runs, ORCHESTRATOR_RUNS)

    async def start() -> None:
        pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
            settings.postgres_dsn,
            kwargs={"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row},
            min_size=1,
            # The checkpointer serialises its queries per saver; more connections add nothing.
            max_size=min(settings.max_concurrent_runs + 2, 16),
            open=False,
        )
        try:
            await pool.open(wait=True, timeout=10)
            saver = AsyncPostgresSaver(pool)
            await saver.setup()
            store = AsyncPostgresStore(pool, index=store_index(settings, router))  # type: ignore[arg-type]
            await store.setup()
        except Exception as exc:
            await pool.close()
            raise StartupError(f"cannot prepare the checkpointer in PostgreSQL: {exc}") from None
        hosted.checkpointer, hosted.store = saver, store
        await warm_up(*(str(m["litellm_params"]["model"]) for m in router.model_list))
        cache = cache_config(router)
        if cache is not None:
            attach_cache(router, await open_cache(service.connection.jetstream(), cache, router))
        state.update(pool=pool, saver=saver, store=store, graphs=hosted)
        state["runner"] = Runner(
            service.connection,
            hosted,
            router,
            service.rejects,
            instance=settings.instance,
            metrics=RunMetrics(service.registry),
            limits=RunLimits(settings.run_timeout, settings.max_runs_per_tenant),
        )
        await service.connection.subscribe(s.RUN_CONTROL_ALL, cb=_control)

    async def _control(msg: Any) -> None:
        await state["runner"].control(msg.data)

    async def stop() -> None:
        # Runs in flight finish (and ack) before their checkpointer's pool closes.
        await slots.drain(settings.shutdown_timeout_s)
        if "store" in state and state["store"]._task is not None:
            state["store"]._task.cancel()  # its batching loop; no run uses it any more
        if "pool" in state:
            await state["pool"].close()

    service.on_startup.append(start)
    service.on_shutdown.append(stop)

    @service.broker.subscriber(
        s.RUNS_SUBMIT,
        stream=JStream(ORCHESTRATOR_RUNS.stream, declare=False),
        durable=ORCHESTRATOR_RUNS.durable,
        config=consumer_config(ORCHESTRATOR_RUNS),
        pull_sub=PullSub(batch_size=1, timeout=5.0),
        ack_policy=AckPolicy.MANUAL,
        inbox_prefix=service.pull_inbox,
        title="runs.submit",
        description="Execute one run (RunRequested) and stream its events",
    )
    async def on_run(msg: NatsMessage) -> None:
        # Returns once the run has a slot; the run goes on in the background (see WorkSlots).
        await slots.start(msg, lambda: state["runner"].handle(msg))

    @service.broker.subscriber(
        STORE_OPS,
        queue="orchestrator",
        title="store.ops",
        description="StoreRequest -> StoreReply",
    )
    async def on_store_op(msg: NatsMessage) -> StoreReply | ErrorReply:
        req = parse_or_error(msg.body, StoreRequest, service.rejects, STORE_OPS)
        if isinstance(req, ErrorReply):
            return req
        try:
            return await store_op(req, state["store"])
        except Exception as exc:  # a filter the store cannot run answers, never hangs
            log.warning("store %s failed", req.op, exc_info=True)
            return ErrorReply(error=f"{type(exc).__name__}: {exc}"[:1000], reason="store_error")

    @service.broker.subscriber(
        THREADS_UPDATE,
        queue="orchestrator",
        title="threads.update",
        description="ThreadUpdateRequest -> ThreadUpdated",
    )
    async def on_thread_update(msg: NatsMessage) -> ThreadUpdated | ErrorReply:
        req = parse_or_error(msg.body, ThreadUpdateRequest, service.rejects, THREADS_UPDATE)
        if isinstance(req, ErrorReply):
            return req
        try:
            return await thread_update(req, state["saver"], state["graphs"])
        except Exception as exc:  # a graph that cannot take the update answers, never hangs
            log.warning("cannot update thread %r", req.thread_id, exc_info=True)
            return ErrorReply(error=f"{type(exc).__name__}: {exc}"[:1000], reason="graph_error")

    @service.broker.subscriber(
        GRAPHS_DESCRIBE,
        queue="orchestrator",
        title="graphs.describe",
        description="GraphDescribeRequest -> GraphDescription",
    )
    async def on_graphs_describe(msg: NatsMessage) -> GraphDescription | ErrorReply:
        req = parse_or_error(msg.body, GraphDescribeRequest, service.rejects, GRAPHS_DESCRIBE)
        if isinstance(req, ErrorReply):
            return req
        try:
            return await describe(req, state["graphs"])
        except Exception as exc:  # a factory or drawing that fails answers, never hangs
            log.warning("cannot describe graph %r", req.graph_id, exc_info=True)
            return ErrorReply(error=f"{type(exc).__name__}: {exc}"[:1000], reason="graph_error")

    @service.broker.subscriber(
        s.THREADS_STATE,
        queue="orchestrator",
        title="threads.state",
        description="ThreadStateRequest -> ThreadState",
    )
    async def on_thread_state(msg: NatsMessage) -> ThreadState | ErrorReply:
        req = parse_or_error(msg.body, ThreadStateRequest, service.rejects, s.THREADS_STATE)
        if isinstance(req, ErrorReply):
            return req
        return await thread_state(req, state["saver"], state["graphs"])

    return service
