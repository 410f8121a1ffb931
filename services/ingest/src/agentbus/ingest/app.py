"""The ingest service's broker app: document jobs and domain-event projection."""

from __future__ import annotations

import logging

from faststream import AckPolicy
from faststream.nats import JStream, PullSub
from faststream.nats.annotations import NatsMessage
from faststream.nats.message import NatsMessage as NatsMessageType

from agentbus.contracts import DeleteDocument, DocumentDeleted, DomainEvent, ErrorReply
from agentbus.contracts import subjects as s
from agentbus.contracts.streams import DOCUMENTS, INGEST_DOMAIN_EVENTS, INGEST_JOBS
from agentbus.runtime.consuming import (
    decode_or_reject,
    is_last_delivery,
    nak_delay,
    parse_or_error,
)
from agentbus.runtime.logs import log_context
from agentbus.runtime.metrics import StageMetrics
from agentbus.runtime.models.embeddings import warm_up
from agentbus.runtime.provisioning import consumer_config
from agentbus.runtime.service import Service, StartupError, new_service
from agentbus.runtime.stores.chunks import create_pool

from . import __version__
from .config import PipelineConfigError, load_pipeline_config
from .deletion import delete_document
from .graph import GraphWriter
from .projection import project
from .settings import IngestSettings
from .store import ChunkStore
from .worker import IngestWorker

log = logging.getLogger("agentbus.ingest")


def build(settings: IngestSettings) -> Service:
    service = new_service(
        "ingest",
        __version__,
        settings,
        description="Parses, chunks, embeds and stores documents; projects events into the graph",
    )
    service.checks.update(service.probes.checks("postgres", "graph"))
    try:
        config = load_pipeline_config(settings.pipeline_config)
    except PipelineConfigError as exc:
        raise StartupError(str(exc)) from None
    graph = GraphWriter(
        settings.graph_url, settings.graph_user, settings.graph_password.get_secret_value()
    )
    state: dict[str, IngestWorker] = {}
    stages = StageMetrics(service.registry)

    async def start() -> None:
        try:
            pool = await create_pool(settings.postgres_dsn, config.embedding.dimensions)
        except Exception as exc:
            raise StartupError(f"cannot prepare PostgreSQL: {exc}") from None
        await graph.ensure_indexes()
        await warm_up(config.embedding.model)
        state["worker"] = IngestWorker(
            service.broker, ChunkStore(pool), graph, config, service.rejects, stages
        )

    async def stop() -> None:
        worker = state.get("worker")
        if worker is not None:
            await worker.store.pool.close()
        await graph.close()

    service.on_startup.append(start)
    service.on_shutdown.append(stop)

    @service.broker.subscriber(
        s.INGEST_SUBMIT,
        stream=JStream(INGEST_JOBS.stream, declare=False),
        durable=INGEST_JOBS.durable,
        config=consumer_config(INGEST_JOBS),
        pull_sub=PullSub(batch_size=1, timeout=5.0),
        ack_policy=AckPolicy.MANUAL,
        inbox_prefix=service.pull_inbox,
        title="ingest.submit",
        description="Index one document (IngestRequested); bytes in the `documents` object store",
    )
    async def on_document(msg: NatsMessage) -> None:
        await state["worker"].handle(msg)

    @service.broker.subscriber(
        s.EVENTS_ALL,
        stream=JStream(INGEST_DOMAIN_EVENTS.stream, declare=False),
        durable=INGEST_DOMAIN_EVENTS.durable,
        config=consumer_config(INGEST_DOMAIN_EVENTS),
        pull_sub=PullSub(batch_size=16, timeout=5.0),
        ack_policy=AckPolicy.MANUAL,
        inbox_prefix=service.pull_inbox,
        title="events",
        description="Domain events (DomainEvent) projected into people/team/repo/skill facts",
    )
    async def on_event(msg: NatsMessage) -> None:
        await handle_event(msg, graph, service)

    @service.broker.subscriber(
        s.INGEST_DELETE,
        queue="ingest",
        title="ingest.delete",
        description="DeleteDocument -> DocumentDeleted: chunks, graph links and stored bytes",
    )
    async def on_delete(msg: NatsMessage) -> DocumentDeleted | ErrorReply:
        req = parse_or_error(msg.body, DeleteDocument, service.rejects, msg.raw_message.subject)
        if isinstance(req, ErrorReply):
            return req
        with log_context(tenant_id=req.tenant_id):
            try:
                objects = await service.connection.jetstream().object_store(DOCUMENTS.name)
                return await delete_document(req, state["worker"].store, graph, objects)
            except Exception as exc:
                log.exception("document delete failed")
                return ErrorReply(
                    error=f"delete failed: {type(exc).__name__}: {exc}"[:500],
                    reason="delete_failed",
                )

    return service


async def handle_event(msg: NatsMessageType, graph: GraphWriter, service: Service) -> None:
    event = await decode_or_reject(msg, DomainEvent, service.rejects)
    if event is None:
        return
    subject = msg.raw_message.subject
    try:
        tokens = s.parse_domain_event(subject)
    except s.SubjectError:
        tokens = ("", "", "")
    if tokens != (event.tenant_id, event.source, event.type):
        # The subject routes by tenant; a body claiming another tenant is never trusted.
        log.warning("rejected message", extra={"subject": subject, "reason": "subject_mismatch"})
        service.rejects.count(subject, "subject_mismatch")
        await msg.reject()
        return
    try:
        await project(graph, event)
    except Exception as exc:
        if is_last_delivery(msg, INGEST_DOMAIN_EVENTS):
            log.error("event projection gave up", extra={"event_id": event.id, "reason": str(exc)})
            await msg.reject()
        else:
            await msg.nack(delay=nak_delay(msg, INGEST_DOMAIN_EVENTS))
        return
    await msg.ack()
