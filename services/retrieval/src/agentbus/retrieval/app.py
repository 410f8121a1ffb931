"""The retrieval service's broker app: search and graph queries, request/reply."""

from __future__ import annotations

import logging

from neo4j.exceptions import ServiceUnavailable, SessionExpired

from agentbus.contracts import (
    GraphQuery,
    GraphResult,
    Passages,
    PassagesRequest,
    SearchRequest,
    SearchResult,
)
from agentbus.contracts import subjects as s
from agentbus.runtime.chassis import Service, StartupError, new_service
from agentbus.runtime.late import Late
from agentbus.runtime.llm.embeddings import warm_up
from agentbus.runtime.stores.chunks import create_pool
from agentbus.runtime.stores.knowledge_graph import async_driver

from . import __version__
from .knowledge_graph_queries import BadGraphQuery, GraphQueries
from .passages import passages
from .search import Searcher
from .settings import RetrievalSettings

log = logging.getLogger("agentbus.retrieval")

GRAPH_RETRY_S = 5.0
# What a graph query answers while the graph server is down: a fixed sentence the agent can pass
# on (the driver's own message carries the server's address).
GRAPH_UNREACHABLE = "the graph could not be reached"
GRAPH_FAILED = "the graph query failed"


def build(settings: RetrievalSettings) -> Service:
    service = new_service(
        "retrieval",
        __version__,
        settings,
        description="Hybrid search over pgvector chunks and named knowledge-graph queries",
    )
    service.checks.update(service.probes.checks("postgres", "graph"))
    driver = async_driver(
        settings.graph_url,
        settings.graph_user,
        settings.graph_password.get_secret_value(),
        falkordb=settings.graph_server == "falkordb",
        # A graph query is retried on a lost server for this long (default 30 s): long enough
        # for a restart, short enough that the agent's tool hears "unavailable", not its own
        # request timeout.
        max_transaction_retry_time=GRAPH_RETRY_S,
        connection_timeout=GRAPH_RETRY_S,
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
            error="The document search failed",
        ),
    )
    async def on_search(req: SearchRequest) -> SearchResult:
        return await searcher.value.search(req)

    @service.replier(
        s.RETRIEVAL_PASSAGES,
        PassagesRequest,
        title="retrieval.passages",
        description="PassagesRequest -> Passages: a document's text in reading order",
        on_error=lambda req, exc: Passages(
            tenant_id=req.tenant_id,
            document_id=req.document_id,
            error="The document's passages could not be read",
        ),
    )
    async def on_passages(req: PassagesRequest) -> Passages:
        return await passages(searcher.value.pool, req)

    @service.replier(
        s.GRAPH_QUERY,
        GraphQuery,
        title="graph.query",
        description="GraphQuery -> GraphResult: named, parameterised, tenant-scoped",
        # Logged with its traceback by the replier; the requester gets a fixed sentence.
        on_error=lambda req, exc: GraphResult(
            tenant_id=req.tenant_id, name=req.name, error=GRAPH_FAILED
        ),
    )
    async def on_graph(req: GraphQuery) -> GraphResult:
        try:
            return await graph.run(req)
        except BadGraphQuery as exc:
            service.rejects.count(s.GRAPH_QUERY, "bad_params")
            return GraphResult(tenant_id=req.tenant_id, name=req.name, error=str(exc))
        except (ServiceUnavailable, SessionExpired, OSError) as exc:
            log.warning("graph query %s: the graph server is unreachable: %s", req.name, exc)
            return GraphResult(tenant_id=req.tenant_id, name=req.name, error=GRAPH_UNREACHABLE)

    return service
