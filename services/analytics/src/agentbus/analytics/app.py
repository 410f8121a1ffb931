"""The analytics service's broker app: event consumers and query handlers are wired here."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

from faststream import Context
from faststream.message import StreamMessage
from faststream.nats.annotations import NatsMessage
from faststream.nats.message import NatsBatchMessage
from nats.aio.msg import Msg
from opentelemetry import trace
from opentelemetry.trace import Span
from pydantic import BaseModel, RootModel

from agentbus.contracts import (
    AnalyticsQuery,
    AnalyticsResult,
    ComponentHealth,
    DocumentIndexed,
    ErrorReply,
    EvaluationScored,
    IngestFailed,
    IngestProgress,
    LlmUsage,
    RunFinished,
    ToolCalled,
)
from agentbus.contracts import subjects as s
from agentbus.contracts.evaluations import EvaluationMetrics, EvaluationMetricsRequest
from agentbus.contracts.insights import ANALYTICS_SQL, AnalyticsSql, SqlResult
from agentbus.contracts.streams import (
    ANALYTICS_DOMAIN_EVENTS,
    ANALYTICS_EVALUATIONS,
    ANALYTICS_INGEST_EVENTS,
    ANALYTICS_TELEMETRY,
    ConsumerSpec,
)
from agentbus.runtime.chassis import Service, StartupError, new_service
from agentbus.runtime.consuming import Fetch, Subscribe, event_or_error, parse_or_error
from agentbus.runtime.health import timed
from agentbus.runtime.settings import ConfigError, load

from . import __version__
from .batcher import Batcher, Metrics
from .deletes import register as register_deletes
from .evals.settings import EvalSettings
from .evaluation_jobs import EvaluationJobs
from .migrations import migrate
from .pull import fast_pull
from .queries import BadParams, Queries, answer
from .rows import Row, evaluation_row, event_row, ingest_row, run_row, tool_row, usage_row
from .settings import AnalyticsSettings
from .sql_guard import answer_sql, sql_failure
from .store import ClickHouseStore

log = logging.getLogger("agentbus.analytics")
tracer = trace.get_tracer("agentbus.analytics")

CONSUMERS = (ANALYTICS_DOMAIN_EVENTS, ANALYTICS_TELEMETRY, ANALYTICS_INGEST_EVENTS)
# Rows that fill up while an insert runs go to the next insert together, up to this many batch
# sizes: an insert into ClickHouse costs about the same for 2,000 rows as for 8,000 (new parts,
# their merges), so a backlog drains in fewer, larger inserts. 1 = one batch size per insert.
INSERT_GROUPING = 4


M = TypeVar("M", bound=BaseModel)
BatchMessage = Annotated[NatsBatchMessage, Context("message")]


class IngestOutcome(RootModel[IngestProgress | DocumentIndexed | IngestFailed]):
    """Any of the three messages on `ingest.progress.<doc>`; their fields tell them apart."""


# Telemetry subject -> (contract, table, row builder).
TELEMETRY: dict[str, tuple[type[BaseModel], str, Callable[[Any], Row]]] = {
    s.TELEMETRY_LLM_USAGE: (LlmUsage, "llm_usage", usage_row),
    s.TELEMETRY_RUN_FINISHED: (RunFinished, "runs", run_row),
    s.TELEMETRY_TOOL_CALLED: (ToolCalled, "tool_calls", tool_row),
    s.TELEMETRY_EVALUATION_SCORED: (EvaluationScored, "evaluations", evaluation_row),
}


async def keep_bytes(msg: StreamMessage[Any]) -> Any:
    """Decoder of the batch subscribers: the handlers parse each body with its contract."""
    return msg.body


async def terminate(raw: Msg) -> None:
    """Reject for good: it would fail the same way again (MSG_TERMINATED is its dead letter)."""
    with contextlib.suppress(Exception):
        await raw.term()


@contextlib.contextmanager
def clickhouse_span(summary: str, tenant_id: str, **attributes: str) -> Iterator[Span]:
    """The span of one ClickHouse read for a tenant; a failure inside names its type."""
    with tracer.start_as_current_span(
        summary,
        attributes={
            **attributes,
            "db.system.name": "clickhouse",
            "db.operation.name": "SELECT",
            "db.query.summary": summary,
            "agentbus.tenant_id": tenant_id,
        },
    ) as span:
        try:
            yield span
        except Exception as exc:
            span.set_attribute("error.type", type(exc).__name__)
            raise


def fits(result: AnalyticsResult, max_payload: int) -> AnalyticsResult:
    """The result, or an error saying why it cannot travel: NATS caps a message's size."""
    size = len(result.model_dump_json())
    if size <= max_payload - 1024:  # room for headers
        return result
    return AnalyticsResult(
        tenant_id=result.tenant_id,
        name=result.name,
        columns=result.columns,
        took_ms=result.took_ms,
        error=(
            f"the result ({len(result.rows)} rows, {size} bytes) is over the bus's message limit "
            f"of {max_payload} bytes; ask for fewer rows (limit) or a shorter period"
        ),
    )


def _on_batch(
    store_batch: Callable[[list[Msg]], Awaitable[None]],
) -> Callable[[BatchMessage], Awaitable[None]]:
    """The FastStream handler of a batch consumer: the whole fetch to `store_batch`."""

    async def on_batch(batch: BatchMessage) -> None:
        await store_batch(batch.raw_message)

    return on_batch


def build(settings: AnalyticsSettings) -> Service:
    service = new_service(
        "analytics",
        __version__,
        settings,
        description="Stores domain events and telemetry in ClickHouse; answers named queries",
    )
    # FastStream logs "Received"/"Processed" per message (per batch for the consumers) at the
    # broker's level; for a service taking thousands of events a second they go to DEBUG.
    service.broker.config.logger.log_level = logging.DEBUG
    store = ClickHouseStore(settings.clickhouse_dsn)
    metrics = Metrics(service.registry)
    queries = Queries(store)
    batchers = {
        spec.durable: Batcher(
            spec,
            store,
            metrics,
            settings.analytics_batch_size,
            settings.analytics_flush_interval_s,
            max_insert_rows=INSERT_GROUPING * settings.analytics_batch_size,
        )
        for spec in CONSUMERS
    }

    def open_and_migrate() -> None:
        store.open()
        migrate(store)

    async def open_store() -> None:
        try:
            await asyncio.to_thread(open_and_migrate)
        except Exception as exc:
            raise StartupError(
                f"cannot open ClickHouse at {settings.clickhouse_dsn}: {str(exc).splitlines()[0]}"
            ) from None
        for batcher in batchers.values():
            batcher.start()

    async def close_store() -> None:
        for batcher in batchers.values():
            try:
                await batcher.close()
            except Exception:
                log.exception("final flush failed; the messages will be redelivered")
        await asyncio.to_thread(store.close)

    async def check_clickhouse() -> ComponentHealth:
        return await timed(store.version, settings.health_timeout_s)

    service.on_startup.append(open_store)
    service.on_shutdown.append(close_store)
    # Analytics owns the ClickHouse connection, so it reports ClickHouse for the platform.
    service.checks["clickhouse"] = check_clickhouse

    # A fetch hands the handler up to this many messages at once; FastStream's per-message
    # pipeline (decode, middlewares, DI) would otherwise cost more than the insert itself.
    fetch = Fetch(
        min(settings.analytics_batch_size, 1000),
        min(settings.analytics_flush_interval_s, 1.0),
        batch=True,
    )

    def batches(spec: ConsumerSpec, title: str, description: str) -> Subscribe:
        return service.consumer(
            spec, title=title, description=description, fetch=fetch, decoder=keep_bytes
        )

    async def decode(raw: Msg, model: type[M]) -> M | None:
        parsed = parse_or_error(raw.data, model, service.rejects, raw.subject)
        if isinstance(parsed, ErrorReply):
            await terminate(raw)
            return None
        return parsed

    async def reject(raw: Msg, reason: str) -> None:
        service.rejects.record(raw.subject, reason)
        await terminate(raw)

    events = batchers[ANALYTICS_DOMAIN_EVENTS.durable]
    telemetry = batchers[ANALYTICS_TELEMETRY.durable]
    ingest = batchers[ANALYTICS_INGEST_EVENTS.durable]

    async def store_events(messages: list[Msg]) -> None:
        stored_at = datetime.now(UTC)
        rows: list[tuple[str, Row, Msg]] = []
        for raw in messages:
            event = event_or_error(raw.data, raw.subject, service.rejects)
            if isinstance(event, ErrorReply):
                await terminate(raw)
                continue
            rows.append(("events", event_row(event, stored_at), raw))
        await events.add_all(rows)

    async def store_telemetry(messages: list[Msg]) -> None:
        rows: list[tuple[str, Row, Msg]] = []
        for raw in messages:
            known = TELEMETRY.get(raw.subject)
            if known is None:
                await reject(raw, "unknown_subject")
                continue
            model, table, to_row = known
            parsed = await decode(raw, model)
            if parsed is not None:
                rows.append((table, to_row(parsed), raw))
        await telemetry.add_all(rows)

    async def store_ingest(messages: list[Msg]) -> None:
        rows: list[tuple[str, Row, Msg]] = []
        for raw in messages:
            parsed = await decode(raw, IngestOutcome)
            if parsed is not None:
                rows.append(("ingest_events", ingest_row(parsed.root), raw))
        await ingest.add_all(rows)

    # The batch consumers: FastStream binds them (subscription, AsyncAPI, TestNatsBroker); their
    # fetch loop is `pull.fast_pull`'s, which hands each fetch to the store function directly.
    for spec, title, description, store_batch in (
        (
            ANALYTICS_DOMAIN_EVENTS,
            "analytics.events",
            "Domain events (DomainEvent) stored in ClickHouse `events`, batched",
            store_events,
        ),
        (
            ANALYTICS_TELEMETRY,
            "analytics.telemetry",
            "LlmUsage, RunFinished, ToolCalled and EvaluationScored, by subject, stored in"
            " ClickHouse",
            store_telemetry,
        ),
        (
            ANALYTICS_INGEST_EVENTS,
            "analytics.ingest",
            "Ingest progress and outcomes (IngestProgress, DocumentIndexed, IngestFailed)",
            store_ingest,
        ),
    ):
        subscriber = batches(spec, title, description)
        subscriber(_on_batch(store_batch))
        fast_pull(subscriber, spec, fetch.size, fetch.timeout_s, store_batch)

    @service.replier(
        s.ANALYTICS_QUERY,
        AnalyticsQuery,
        title="analytics.query",
        description="AnalyticsQuery -> AnalyticsResult (or ErrorReply for an unreadable request)",
        on_error=lambda req, exc: AnalyticsResult(
            tenant_id=req.tenant_id, name=req.name, error="The query failed"
        ),
    )
    async def on_query(req: AnalyticsQuery) -> AnalyticsResult:
        summary = f"analytics.query {req.name}"
        with clickhouse_span(summary, req.tenant_id, **{"db.system": "clickhouse"}) as span:
            try:
                return fits(await answer(queries, req), service.connection.max_payload)
            except BadParams as exc:
                span.set_attribute("error.type", "bad_params")
                service.rejects.count(s.ANALYTICS_QUERY, "bad_params")
                return AnalyticsResult(tenant_id=req.tenant_id, name=req.name, error=str(exc))

    @service.replier(
        ANALYTICS_SQL,
        AnalyticsSql,
        title="analytics.sql",
        description="AnalyticsSql -> SqlResult: one SELECT, allow-listed and tenant-scoped here",
        on_error=lambda req, exc: SqlResult(tenant_id=req.tenant_id, error=sql_failure(exc)),
    )
    async def on_sql(req: AnalyticsSql) -> SqlResult:
        with clickhouse_span("analytics.sql", req.tenant_id) as span:
            result = await answer_sql(store, req)
            if result.rejected:
                span.set_attribute("error.type", "rejected")
                service.rejects.count(ANALYTICS_SQL, "rejected_sql")
            else:
                span.set_attribute("db.query.text", result.sql[:2000])
                span.set_attribute("db.response.returned_rows", len(result.rows))
            return result

    try:
        eval_settings = load(EvalSettings)
    except ConfigError as exc:
        raise StartupError(str(exc)) from None
    jobs = EvaluationJobs(service, queries, eval_settings)

    @service.consumer(
        ANALYTICS_EVALUATIONS,
        title="evaluations.submit",
        description="Run one evaluation (EvaluationRequested) as `agentbus eval` does; progress "
        "and outcome on evaluations.events.<evaluation_id>",
    )
    async def on_evaluation(msg: NatsMessage) -> None:
        await jobs.handle(msg)

    @service.replier(
        s.EVALUATIONS_METRICS,
        EvaluationMetricsRequest,
        title="evaluations.metrics",
        description="EvaluationMetricsRequest -> EvaluationMetrics: the metrics evaluations judge",
        on_error=lambda req, exc: EvaluationMetrics(
            tenant_id=req.tenant_id, error="the metrics could not be listed"
        ),
    )
    async def on_metrics(req: EvaluationMetricsRequest) -> EvaluationMetrics:
        return await jobs.metrics(req)

    register_deletes(service, store)
    return service
