"""Vector, keyword and hybrid search over one tenant's chunks, each in one SQL round trip.

Hybrid is reciprocal rank fusion (k = 60) of the vector ranking (pgvector HNSW, cosine) and the
keyword ranking (PostgreSQL full text, `ts_rank_cd`), computed inside the database; equal fused
scores (common when the two rankings swap two chunks) go to the closer meaning. Keyword
matching ORs the query's stemmed terms, so a question phrased differently from the text still
finds chunks sharing some words; ranking then prefers chunks sharing more of them.

Hybrid's keyword half ranks only the chunks holding the query's rarer terms. Ranking every chunk
that shares any word with the query cost ~40 ms at 100k chunks (a query with "one" in it matched
15,847), most of it fetching and scoring rows that can never reach the top 50. So the terms are
taken rarest first while their estimated matches stay within `KEYWORD_BUDGET` rows (the rarest
always), and those candidates are ranked with every term of the query. Frequencies come from
the planner's own statistics on `chunks.tsv` (`pg_stats.most_common_elems`, kept by ANALYZE and
autovacuum): no table of our own to maintain. A term absent from them is rarer than every listed
one; until the table is analysed, or while the corpus is small, nothing is dropped.
"""

from __future__ import annotations

import json
import time
from typing import Any

import asyncpg
from opentelemetry.trace import SpanKind

from agentbus.contracts import SearchHit, SearchRequest, SearchResult
from agentbus.runtime.llm.embeddings import embed
from agentbus.runtime.stores import pipeline_settings
from agentbus.runtime.traces import tracer

from .chunk_reads import select_chunks

RRF_K = 60
# Each ranking contributes this many candidates to the fusion.
CANDIDATES = 50
# Chunks the keyword half of hybrid may rank, as estimated from the table's statistics.
KEYWORD_BUDGET = 1_000

_QUERY = (
    "to_tsquery('simple', array_to_string(tsvector_to_array(to_tsvector('english', $3)), ' | '))"
)


def keyword_terms_sql(budget: int) -> str:
    """CTEs: the query's lexemes with the rows each is estimated to match (0 when it is not among
    the table's most common lexemes), those kept for matching (rarest first, within `budget`),
    and `q`: the query to match (`match_q`) and the one to rank with (`rank_q`)."""
    return f"""
common AS (
    SELECT u.lexeme, u.freq * greatest(c.reltuples, 0) AS est
    FROM pg_stats s
    JOIN pg_namespace n ON n.nspname = s.schemaname
    JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = s.tablename
    CROSS JOIN LATERAL unnest(s.most_common_elems::text::text[], s.most_common_elem_freqs)
        AS u(lexeme, freq)
    WHERE c.oid = 'chunks'::regclass AND s.attname = 'tsv' AND u.lexeme IS NOT NULL
),
terms AS (
    SELECT t.lexeme, coalesce(common.est, 0) AS est
    FROM unnest(tsvector_to_array(to_tsvector('english', $3))) AS t(lexeme)
    LEFT JOIN common USING (lexeme)
),
kept AS (
    SELECT lexeme FROM (
        SELECT lexeme, row_number() OVER w AS n, sum(est) OVER w AS cumulative
        FROM terms WINDOW w AS (ORDER BY est, lexeme)
    ) ranked
    WHERE n = 1 OR cumulative <= {int(budget)}
),
q AS (
    SELECT to_tsquery('simple', coalesce((SELECT string_agg(lexeme, ' | ') FROM kept), ''))
               AS match_q,
           to_tsquery('simple', coalesce((SELECT string_agg(lexeme, ' | ') FROM terms), ''))
               AS rank_q
)"""


def _filters(req: SearchRequest, first_param: int) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    params: list[Any] = []
    n = first_param
    if req.filters.document_ids:
        clauses.append(f"document_id = ANY(${n}::text[])")
        params.append(req.filters.document_ids)
        n += 1
    if req.filters.source:
        clauses.append(f"source = ${n}")
        params.append(req.filters.source)
        n += 1
    if req.filters.tags:
        clauses.append(f"tags @> ${n}::text[]")
        params.append(req.filters.tags)
        n += 1
    return "".join(f" AND {c}" for c in clauses), params


def hybrid_sql(where: str, keyword_budget: int = KEYWORD_BUDGET) -> str:
    return f"""
WITH {keyword_terms_sql(keyword_budget)},
v AS (
    SELECT document_id, chunk_index, 1 - (embedding <=> $2) AS vscore,
           row_number() OVER (ORDER BY embedding <=> $2) AS vrank
    FROM chunks WHERE tenant_id = $1{where}
    ORDER BY embedding <=> $2 LIMIT {CANDIDATES}
),
k AS (
    SELECT document_id, chunk_index, ts_rank_cd(tsv, q.rank_q) AS kscore,
           row_number() OVER (ORDER BY ts_rank_cd(tsv, q.rank_q) DESC) AS krank
    FROM chunks, q WHERE tenant_id = $1 AND tsv @@ q.match_q{where}
    ORDER BY kscore DESC LIMIT {CANDIDATES}
),
f AS (
    SELECT document_id, chunk_index, v.vscore, k.kscore,
           coalesce(1.0 / ({RRF_K} + v.vrank), 0) + coalesce(1.0 / ({RRF_K} + k.krank), 0) AS score
    FROM v FULL OUTER JOIN k USING (document_id, chunk_index)
)
SELECT c.document_id, c.chunk_index, c.title, c.source, c.page, c.text, c.metadata,
       f.score, f.vscore, f.kscore
FROM f JOIN chunks c
  ON c.tenant_id = $1 AND c.document_id = f.document_id AND c.chunk_index = f.chunk_index
ORDER BY f.score DESC, f.vscore DESC NULLS LAST, c.document_id, c.chunk_index
LIMIT $4
"""


def vector_sql(where: str) -> str:
    return f"""
SELECT document_id, chunk_index, title, source, page, text, metadata,
       1 - (embedding <=> $2) AS score, 1 - (embedding <=> $2) AS vscore, NULL::real AS kscore
FROM chunks WHERE tenant_id = $1{where}
ORDER BY embedding <=> $2, document_id, chunk_index LIMIT $3
"""


def keyword_sql(where: str) -> str:
    return f"""
WITH q AS (SELECT {_QUERY.replace("$3", "$2")} AS tsq)
SELECT document_id, chunk_index, title, source, page, text, metadata,
       ts_rank_cd(tsv, q.tsq) AS score, NULL::real AS vscore, ts_rank_cd(tsv, q.tsq) AS kscore
FROM chunks, q WHERE tenant_id = $1 AND tsv @@ q.tsq{where}
ORDER BY score DESC, document_id, chunk_index LIMIT $3
"""


class Searcher:
    def __init__(
        self,
        pool: asyncpg.Pool,
        model: str,
        dimensions: int,
        keyword_budget: int = KEYWORD_BUDGET,
    ) -> None:
        self.pool = pool
        self.model = model
        self.dimensions = dimensions
        self.keyword_budget = keyword_budget

    async def tenant_request(self, req: SearchRequest) -> tuple[SearchRequest, str]:
        """The request with the tenant's retrieval settings for what the caller left unset
        (method, top_k, threshold: callers that serialize with `exclude_unset`, as the agent's
        document search does), and the tenant's embedding model. A tenant that never saved
        settings gets the defaults of `PipelineSettings` and the service's model."""
        stored = await pipeline_settings.load(self.pool, req.tenant_id)
        model = stored.settings.embedding.model if stored.revision else self.model
        r = stored.settings.retrieval
        update: dict[str, Any] = {}
        if "mode" not in req.model_fields_set:
            update["mode"] = r.method
        if "top_k" not in req.model_fields_set:
            update["top_k"] = r.top_k
        if "min_score" not in req.model_fields_set and r.threshold is not None:
            update["min_score"] = r.threshold
        return req.model_copy(update=update), model

    async def search(self, req: SearchRequest) -> SearchResult:
        started = time.perf_counter()
        req, model = await self.tenant_request(req)
        with tracer().start_as_current_span(
            f"search {req.mode}",
            attributes={"agentbus.search.mode": req.mode, "agentbus.search.top_k": req.top_k},
        ) as span:
            rows = await self._rows(req, model)
            span.set_attribute("agentbus.search.hits", len(rows))
        hits = [_hit(r) for r in rows]
        if req.min_score is not None:
            hits = [h for h in hits if h.score >= req.min_score]
        return SearchResult(
            tenant_id=req.tenant_id,
            query=req.query,
            mode=req.mode,
            hits=hits,
            took_ms=(time.perf_counter() - started) * 1e3,
        )

    async def _rows(self, req: SearchRequest, model: str) -> list[asyncpg.Record]:
        if req.mode == "keyword":
            where, extra = _filters(req, 4)
            return await self._fetch(
                req.mode, keyword_sql(where), req.tenant_id, req.query, req.top_k, *extra
            )
        with tracer().start_as_current_span(
            f"embeddings {model}",
            kind=SpanKind.CLIENT,
            attributes={"gen_ai.operation.name": "embeddings", "gen_ai.request.model": model},
        ) as span:
            result = await embed([req.query], model, dimensions=self.dimensions)
            span.set_attributes(
                {
                    "gen_ai.provider.name": model.split("/", 1)[0] if "/" in model else "openai",
                    "gen_ai.usage.input_tokens": result.input_tokens,
                }
            )
        vector = result.vectors[0]
        if req.mode == "vector":
            where, extra = _filters(req, 4)
            return await self._fetch(
                req.mode, vector_sql(where), req.tenant_id, vector, req.top_k, *extra
            )
        where, extra = _filters(req, 5)
        return await self._fetch(
            req.mode,
            hybrid_sql(where, self.keyword_budget),
            req.tenant_id,
            vector,
            req.query,
            req.top_k,
            *extra,
        )

    async def _fetch(self, mode: str, sql: str, *args: Any) -> list[asyncpg.Record]:
        return await select_chunks(self.pool, f"{mode} search", sql, *args)


def _hit(row: asyncpg.Record) -> SearchHit:
    scores = {
        name: float(row[col])
        for name, col in (("vector", "vscore"), ("keyword", "kscore"))
        if row[col] is not None
    }
    metadata = row["metadata"]
    return SearchHit(
        chunk_id=f"{row['document_id']}:{row['chunk_index']}",
        document_id=row["document_id"],
        title=row["title"],
        source=row["source"],
        page=row["page"],
        chunk_index=row["chunk_index"],
        text=row["text"],
        score=float(row["score"]),
        scores=scores,
        metadata=json.loads(metadata) if isinstance(metadata, str) else dict(metadata or {}),
    )
