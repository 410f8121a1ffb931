"""The ingest service's broker app: document jobs and domain-event projection."""

from __future__ import annotations

import logging

from faststream.nats.annotations import NatsMessage
from faststream.nats.message import NatsMessage as NatsMessageType

from agentbus.contracts import DeleteDocument, DocumentDeleted, ErrorReply
from agentbus.contracts import subjects as s
from agentbus.contracts.streams import DOCUMENTS, INGEST_DOMAIN_EVENTS, INGEST_JOBS
from agentbus.runtime.chassis import Service, StartupError, new_service
from agentbus.runtime.consuming import Fetch, event_or_error, is_last_delivery, nak_delay
from agentbus.runtime.late import Late
from agentbus.runtime.llm.embeddings import warm_up
from agentbus.runtime.metrics import StageMetrics
from agentbus.runtime.replies import error_reply
from agentbus.runtime.stores.chunks import create_pool

from . import __version__
from .config import PipelineConfigError, load_pipeline_config
from .deletion import delete_document
from .knowledge_graph import GraphWriter
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
        settings.graph_url,
        settings.graph_user,
        settings.graph_password.get_secret_value(),
        falkordb=settings.graph_server == "falkordb",
    )
    worker: Late[IngestWorker] = Late("the ingest worker")
    stages = StageMetrics(service.registry)

    async def start() -> None:
        try:
            pool = await create_pool(settings.postgres_dsn, config.embedding.dimensions)
        except Exception as exc:
            raise StartupError(f"cannot prepare PostgreSQL: {exc}") from None
        await graph.ensure_indexes()
        await warm_up(config.embedding.model)
        worker.set(
            IngestWorker(
                service.broker, ChunkStore(pool), graph, config, service.rejects, stages,
                service.registry,
            )
        )  # fmt: skip

    async def stop() -> None:
        if (made := worker.get()) is not None:
            await made.outbox.close(min(5.0, settings.shutdown_timeout_s))
            await made.store.pool.close()
        await graph.close()

    service.on_startup.append(start)
    service.on_shutdown.append(stop)

    @service.consumer(
        INGEST_JOBS,
        title="ingest.submit",
        description="Index one document (IngestRequested); bytes in the `documents` object store",
    )
    async def on_document(msg: NatsMessage) -> None:
        await worker.value.handle(msg)

    @service.consumer(
        INGEST_DOMAIN_EVENTS,
        fetch=Fetch(size=16),
        title="events",
        description="Domain events (DomainEvent) projected into people/team/repo/skill facts",
    )
    async def on_event(msg: NatsMessage) -> None:
        await handle_event(msg, graph, service)

    @service.replier(
        s.INGEST_DELETE,
        DeleteDocument,
        title="ingest.delete",
        description="DeleteDocument -> DocumentDeleted: chunks, graph links and stored bytes",
        on_error=error_reply("delete_failed", "The document could not be deleted"),
    )
    async def on_delete(req: DeleteDocument) -> DocumentDeleted:
        objects = await service.connection.jetstream().object_store(DOCUMENTS.name)
        return await delete_document(req, worker.value.store, graph, objects)

    return service


async def handle_event(msg: NatsMessageType, graph: GraphWriter, service: Service) -> None:
    event = event_or_error(msg.body, msg.raw_message.subject, service.rejects)
    if isinstance(event, ErrorReply):
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
