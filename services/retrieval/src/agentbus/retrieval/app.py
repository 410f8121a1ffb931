"""The retrieval service's broker app: search and graph queries, request/reply."""

from __future__ import annotations

import logging

from faststream.nats.annotations import NatsMessage

from agentbus.contracts import ErrorReply, GraphQuery, GraphResult, SearchRequest, SearchResult
from agentbus.contracts import subjects as s
from agentbus.runtime.consuming import parse_or_error
from agentbus.runtime.logs import log_context
from agentbus.runtime.models.embeddings import warm_up
from agentbus.runtime.service import Service, StartupError, new_service
from agentbus.runtime.stores.chunks import create_pool
from agentbus.runtime.stores.graph import async_driver

from . import __version__
from .graph_queries import BadGraphQuery, GraphQueries
from .search import Searcher
from .settings import RetrievalSettings

log = logging.getLogger("agentbus.retrieval")


def build(settings: RetrievalSettings) -> Service:
    service = new_service(
        "retrieval",
        __version__,
        settings,
        description="Hybrid search over pgvector chunks and named knowledge-graph queries",
    )
    service.checks.update(service.probes.checks("postgres", "graph"))
    driver = async_driver(
        settings.graph_url, settings.graph_user, settings.graph_password.get_secret_value()
    )
    graph = GraphQueries(driver)
    state: dict[str, Searcher] = {}

    async def start() -> None:
        try:
            pool = await create_pool(settings.postgres_dsn, settings.embedding_dimensions)
        except Exception as exc:
            raise StartupError(f"cannot prepare PostgreSQL: {exc}") from None
        state["searcher"] = Searcher(pool, settings.embedding_model, settings.embedding_dimensions)
        await warm_up(settings.embedding_model)

    async def stop() -> None:
        if "searcher" in state:
            await state["searcher"].pool.close()
        await driver.close()

    service.on_startup.append(start)
    service.on_shutdown.append(stop)

    @service.broker.subscriber(
        s.RETRIEVAL_SEARCH,
        queue="retrieval",
        title="retrieval.search",
        description="SearchRequest -> SearchResult (or ErrorReply for an unreadable request)",
    )
    async def on_search(msg: NatsMessage) -> SearchResult | ErrorReply:
        req = parse_or_error(msg.body, SearchRequest, service.rejects, msg.raw_message.subject)
        if isinstance(req, ErrorReply):
            return req
        with log_context(tenant_id=req.tenant_id):
            try:
                return await state["searcher"].search(req)
            except Exception as exc:
                log.exception("search failed")
                return SearchResult(
                    tenant_id=req.tenant_id,
                    query=req.query,
                    mode=req.mode,
                    error=f"search failed: {type(exc).__name__}: {exc}"[:500],
                )

    @service.broker.subscriber(
        s.GRAPH_QUERY,
        queue="retrieval",
        title="graph.query",
        description="GraphQuery -> GraphResult: named, parameterised, tenant-scoped",
    )
    async def on_graph(msg: NatsMessage) -> GraphResult | ErrorReply:
        req = parse_or_error(msg.body, GraphQuery, service.rejects, msg.raw_message.subject)
        if isinstance(req, ErrorReply):
            return req
        with log_context(tenant_id=req.tenant_id):
            try:
                return await graph.run(req)
            except BadGraphQuery as exc:
                service.rejects.count(msg.raw_message.subject, "bad_params")
                return GraphResult(tenant_id=req.tenant_id, name=req.name, error=str(exc))
            except Exception as exc:
                log.exception("graph query failed")
                return GraphResult(
                    tenant_id=req.tenant_id,
                    name=req.name,
                    error=f"graph query failed: {type(exc).__name__}: {exc}"[:500],
                )

    return service
