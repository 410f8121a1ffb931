"""The retrieval service's broker app: search and graph queries, request/reply."""

from __future__ import annotations

import logging

from agentbus.contracts import GraphQuery, GraphResult, SearchRequest, SearchResult
from agentbus.contracts import subjects as s
from agentbus.runtime.late import Late
from agentbus.runtime.models.embeddings import warm_up
from agentbus.runtime.replies import failure_text
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
    searcher: Late[Searcher] = Late("the searcher")

    async def start() -> None:
        try:
            pool = await create_pool(settings.postgres_dsn, settings.embedding_dimensions)
        except Exception as exc:
            raise StartupError(f"cannot prepare PostgreSQL: {exc}") from None
        searcher.set(Searcher(pool, settings.embedding_model, settings.embedding_dimensions))
        await warm_up(settings.embedding_model)

    async def stop() -> None:
        if (made := searcher.get()) is not None:
            await made.pool.close()
        await driver.close()

    service.on_startup.append(start)
    service.on_shutdown.append(stop)

    @service.replier(
        s.RETRIEVAL_SEARCH,
        SearchRequest,
        title="retrieval.search",
        description="SearchRequest -> SearchResult (or ErrorReply for an unreadable request)",
        on_error=lambda req, exc: SearchResult(
            tenant_id=req.tenant_id,
            query=req.query,
            mode=req.mode,
            error=failure_text(exc, "search failed"),
        ),
    )
    async def on_search(req: SearchRequest) -> SearchResult:
        return await searcher.value.search(req)

    @service.replier(
        s.GRAPH_QUERY,
        GraphQuery,
        title="graph.query",
        description="GraphQuery -> GraphResult: named, parameterised, tenant-scoped",
        on_error=lambda req, exc: GraphResult(
            tenant_id=req.tenant_id, name=req.name, error=failure_text(exc, "graph query failed")
        ),
    )
    async def on_graph(req: GraphQuery) -> GraphResult:
        try:
            return await graph.run(req)
        except BadGraphQuery as exc:
            service.rejects.count(s.GRAPH_QUERY, "bad_params")
            return GraphResult(tenant_id=req.tenant_id, name=req.name, error=str(exc))

    return service
