"""Graph queries stay inside the caller's tenant whatever the caller's values contain, against
the real embedded graph server (whose Bolt listener splices parameters into the query text)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from agentbus.contracts import GraphQuery
from agentbus.ingest.knowledge_graph import GraphWriter, Mention
from agentbus.retrieval.knowledge_graph_queries import GraphQueries
from agentbus.runtime.engines import GraphEngine
from agentbus.runtime.stores.knowledge_graph import async_driver


@pytest.fixture
async def queries(graph_engine: GraphEngine) -> AsyncIterator[GraphQueries]:
    writer = GraphWriter(graph_engine.url)
    await writer.write_document(
        "gt-victim",
        "gt-secret-doc",
        "Victim's secret plan",
        [{"chunk_index": 0, "page": None}],
        [Mention(0, "pg_dumpall", "pg_dumpall", "code", 1)],
        [],
    )
    await writer.close()
    driver = async_driver(graph_engine.url)
    yield GraphQueries(driver)
    await driver.close()


@pytest.mark.parametrize(
    "entity", ["pg_dumpall", "pg_dumpall' t='gt-victim", "x\\' t=\\'gt-victim"]
)
async def test_another_tenants_documents_never_come_back(
    queries: GraphQueries, entity: str
) -> None:
    result = await queries.run(
        GraphQuery(tenant_id="gt-attacker", name="documents_mentioning", params={"entity": entity})
    )
    assert result.error is None
    assert result.rows == []


async def test_the_owner_still_finds_it(queries: GraphQueries) -> None:
    result = await queries.run(
        GraphQuery(
            tenant_id="gt-victim", name="documents_mentioning", params={"entity": "pg_dumpall"}
        )
    )
    assert [row.get("document_id") for row in result.rows] == ["gt-secret-doc"], result.rows
