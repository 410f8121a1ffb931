"""Hybrid's keyword half ranks only the chunks holding the query's rarer terms, estimated from
the table's own statistics (search.py). Over real PostgreSQL, in a database of its own so that
other tests' chunks do not move the statistics."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import numpy as np
import pytest

from agentbus.contracts import SearchRequest
from agentbus.retrieval.search import Searcher
from agentbus.runtime.stores.chunks import create_pool
from agentbus.runtime.testing import scratch_database

TENANT = "t-keywords"
# "deploy" is in every chunk; "rollback" in two; "canary" in one.
COMMON = 40
TEXTS = [f"Deploy step {i} of the release train." for i in range(COMMON)] + [
    "Deploy a rollback when a deploy fails.",
    "Rollback notes for the ops team.",
    "Canary checks run first.",
]


@pytest.fixture
async def pool(service_env: dict[str, str]) -> AsyncIterator[asyncpg.Pool]:
    async with scratch_database(service_env["AGENTBUS_POSTGRES_DSN"], "keywords") as scratch:
        name = await scratch.fetchval("SELECT current_database()")
        dsn = service_env["AGENTBUS_POSTGRES_DSN"].rsplit("/", 1)[0] + f"/{name}"
        chunks = await create_pool(dsn, 384)
        rng = np.random.default_rng(7)
        try:
            async with chunks.acquire() as conn:
                for i, text in enumerate(TEXTS):
                    vector = rng.standard_normal(384).astype(np.float32)
                    await conn.execute(
                        "INSERT INTO chunks (tenant_id, document_id, chunk_index, sha256,"
                        " content_hash, title, source, text, embedding)"
                        " VALUES ($1, $2, 0, 'x', 'y', '', 'wiki', $3, $4)",
                        TENANT,
                        f"doc-{i:02d}",
                        text,
                        vector / np.linalg.norm(vector),
                    )
            yield chunks
        finally:
            await chunks.close()


async def keyword_ranked(searcher: Searcher, query: str) -> list[str]:
    """The chunks the keyword half ranked (they carry a keyword score), best first."""
    result = await searcher.search(
        SearchRequest(tenant_id=TENANT, query=query, mode="hybrid", top_k=50)
    )
    hits = [h for h in result.hits if "keyword" in h.scores]
    return [h.document_id for h in sorted(hits, key=lambda h: -h.scores["keyword"])]


async def test_common_terms_only_rank_the_candidates_of_rarer_ones(pool: asyncpg.Pool) -> None:
    searcher = Searcher(pool, "local/all-MiniLM-L6-v2", 384, keyword_budget=5)
    # Before ANALYZE there are no statistics: every term matches, as keyword search does.
    before = await keyword_ranked(searcher, "deploy rollback")
    assert len(before) == COMMON + 2

    async with pool.acquire() as conn:
        await conn.execute("ANALYZE chunks")
    after = await keyword_ranked(searcher, "deploy rollback")
    # "deploy" (about 41 rows) is over the budget of 5: only the "rollback" chunks are ranked,
    # and with every term, so the one that also says "deploy" comes first.
    assert after == [f"doc-{COMMON:02d}", f"doc-{COMMON + 1:02d}"]

    # Terms within the budget together are all kept.
    assert set(await keyword_ranked(searcher, "rollback canary")) == {
        f"doc-{COMMON:02d}",
        f"doc-{COMMON + 1:02d}",
        f"doc-{COMMON + 2:02d}",
    }
    # A query of common terms only still matches on its rarest one.
    assert len(await keyword_ranked(searcher, "deploy")) == COMMON + 1


async def test_a_budget_above_the_table_keeps_every_term(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        await conn.execute("ANALYZE chunks")
    searcher = Searcher(pool, "local/all-MiniLM-L6-v2", 384)  # the default budget
    assert len(await keyword_ranked(searcher, "deploy rollback")) == COMMON + 2
