"""The orchestrator's broker app: runs from the RUNS queue, run control, thread state."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

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
from agentbus.runtime.chassis import Service, StartupError, new_service
from agentbus.runtime.late import Late
from agentbus.runtime.llm.embeddings import warm_up
from agentbus.runtime.metrics import RunMetrics
from agentbus.runtime.replies import error_reply
from agentbus.runtime.slots import WorkSlots

from . import __version__, graph_config, graphs
from .describe import describe
from .diagnostics import drop_diagnostics
from .langgraph_tables import setup_under_lock
from .model_cache import open_cache
from .model_calls import ModelConfigError, attach_cache, cache_config, load_router
from .model_spans import capture_content
from .runner import RunLimits, Runner
from .settings import OrchestratorSettings
from .store_ops import store_failure, store_index, store_op
from .thread_ops import thread_update
from .threads import thread_state

log = logging.getLogger("agentbus.orchestrator.app")


@dataclass
class Engines:
    """What start-up opens in PostgreSQL, and the runner that uses it."""

    pool: AsyncConnectionPool[Any]
    saver: AsyncPostgresSaver
    store: AsyncPostgresStore
    runner: Runner


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
    engines: Late[Engines] = Late("the checkpointer and runner")
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
            store = AsyncPostgresStore(pool, index=store_index(settings, router))  # type: ignore[arg-type]
            await setup_under_lock(pool, saver, store)
        except Exception as exc:
            await pool.close()
            raise StartupError(f"cannot prepare the checkpointer in PostgreSQL: {exc}") from None
        hosted.checkpointer, hosted.store = saver, store
        await warm_up(*(str(m["litellm_params"]["model"]) for m in router.model_list))
        cache = cache_config(router)
        if cache is not None:
            attach_cache(router, await open_cache(service.connection.jetstream(), cache, router))
        runner = Runner(
            service.connection,
            hosted,
            router,
            service.rejects,
            instance=settings.instance,
            metrics=RunMetrics(service.registry),
            limits=RunLimits(settings.run_timeout, settings.max_runs_per_tenant),
            slots=slots,
            registry=service.registry,
        )
        engines.set(Engines(pool, saver, store, runner))

    async def stop() -> None:
        # Runs in flight finish (and ack) before their checkpointer's pool closes.
        await slots.drain(settings.shutdown_timeout_s)
        if (made := engines.get()) is not None:
            await made.runner.outbox.close(min(5.0, settings.shutdown_timeout_s))
            if made.store._task is not None:
                made.store._task.cancel()  # its batching loop; no run uses it any more
            await made.pool.close()

    service.on_startup.append(start)
    service.on_shutdown.append(stop)

    @service.consumer(
        ORCHESTRATOR_RUNS,
        title="runs.submit",
        description="Execute one run (RunRequested) and stream its events",
    )
    async def on_run(msg: NatsMessage) -> None:
        # Returns once the run has a slot; the run goes on in the background (see WorkSlots).
        await slots.start(msg, lambda: engines.value.runner.handle(msg))

    # No queue group: every replica hears it, and the one running the run acts on it.
    @service.broker.subscriber(
        s.RUN_CONTROL_ALL,
        title="runs.control",
        description="Cancel or interrupt a run (RunControl) if it runs on this replica",
    )
    async def on_control(msg: NatsMessage) -> None:
        await engines.value.runner.control(msg.body)

    # A request the work cannot answer is answered with an ErrorReply, never left to time out:
    # a store filter the store cannot run, a graph that cannot take an update or be drawn.
    @service.replier(
        STORE_OPS,
        StoreRequest,
        title="store.ops",
        description="StoreRequest -> StoreReply",
        on_error=store_failure,
    )
    async def on_store_op(req: StoreRequest) -> StoreReply | ErrorReply:
        return await store_op(req, engines.value.store)

    @service.replier(
        THREADS_UPDATE,
        ThreadUpdateRequest,
        title="threads.update",
        description="ThreadUpdateRequest -> ThreadUpdated",
        on_error=error_reply("graph_error", "The thread could not be updated"),
    )
    async def on_thread_update(req: ThreadUpdateRequest) -> ThreadUpdated | ErrorReply:
        return await thread_update(req, engines.value.saver, hosted)

    @service.replier(
        GRAPHS_DESCRIBE,
        GraphDescribeRequest,
        title="graphs.describe",
        description="GraphDescribeRequest -> GraphDescription",
        on_error=error_reply("graph_error", "The graph could not be described"),
    )
    async def on_graphs_describe(req: GraphDescribeRequest) -> GraphDescription | ErrorReply:
        return await describe(req, hosted)

    @service.replier(
        s.THREADS_STATE,
        ThreadStateRequest,
        title="threads.state",
        description="ThreadStateRequest -> ThreadState",
        on_error=error_reply("graph_error", "The thread's state could not be read"),
    )
    async def on_thread_state(req: ThreadStateRequest) -> ThreadState:
        return await thread_state(req, engines.value.saver, hosted)

    return service
