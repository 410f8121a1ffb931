"""Retrieval: latency, throughput and recall of `hybrid` and `vector` search over 100k chunks.

Loads N synthetic chunks (384-d, L2-normalised, clustered vectors plus Zipf-distributed English
text) straight into the `chunks` table of a PostgreSQL it starts itself, then measures:

- recall@10 of the search the service runs (HNSW, pgvector defaults plus the service's
  `hnsw.iterative_scan = relaxed_order`) against exact search: vector mode against a brute-force
  numpy ground truth, hybrid mode against the same hybrid SQL with index scans disabled (so the
  vector ranking is an exact sequential scan); plus a small `hnsw.ef_search` sweep;
- level "sql": p50/p99 and QPS at each concurrency of the exact SQL the service sends
  (`agentbus.retrieval.search.hybrid_sql` / `vector_sql`), with precomputed query vectors,
  through `agentbus.runtime.stores.chunks.create_pool` — the database's share;
- level "e2e": the same over the bus, request/reply on `agentbus.v1.retrieval.search` to the real
  retrieval service, which embeds each query with local all-MiniLM-L6-v2. Baseline measured in
  the same run: the raw query embedding (`agentbus.runtime.llm.embeddings.embed` on one query),
  so "service adds" = e2e - embedding - SQL is what the bus and the service code cost.

Run: `.venv/bin/python -m bench.retrieval_latency [--chunks 100000] [--json out.json]`.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

if __package__ in (None, ""):  # `python bench/retrieval_latency.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import asyncpg
import nats
from pgvector.asyncpg import register_vector

from agentbus.contracts import SearchRequest, SearchResult
from agentbus.contracts import subjects as s
from agentbus.retrieval.search import (
    KEYWORD_BUDGET,
    hybrid_sql,
    keyword_sql,
    keyword_terms_sql,
    vector_sql,
)
from agentbus.retrieval.settings import RetrievalSettings
from agentbus.runtime.llm.embeddings import embed
from agentbus.runtime.platform import Platform
from agentbus.runtime.stores.chunks import create_pool
from bench.common import (
    LoadResult,
    Vocabulary,
    add_common_arguments,
    bench_root,
    closed_loop,
    engines,
    foreign_load,
    isolate_environment,
    machine_info,
    markdown_table,
    positive_ints,
    service,
    summarize,
    write_json,
)

DIM = 384
TENANT = "bench"
TOP_K = 10
CHUNKS_PER_DOCUMENT = 50
TOPIC_WORDS = 8


# -- synthetic corpus ------------------------------------------------------------------------


@dataclass
class Corpus:
    vectors: np.ndarray  # (n, DIM) float32, unit length
    texts: list[str]
    titles: list[str]
    query_vectors: np.ndarray  # (q, DIM) float32, unit length
    query_texts: list[str]
    params: dict[str, Any] = field(default_factory=dict)


def _unit(x: np.ndarray) -> np.ndarray:
    out: np.ndarray = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    return out


def make_corpus(
    vocab: Vocabulary,
    n: int,
    queries: int,
    clusters: int,
    latent_dim: int,
    spread: float,
    noise: float,
    seed: int,
) -> Corpus:
    """Vectors: a mixture of `clusters` Gaussians in a `latent_dim`-d subspace (cluster spread
    `spread` around N(0, I) centres), embedded in 384-d by a random orthonormal basis, plus
    isotropic noise of `noise` per dimension, L2-normalised. Real sentence embeddings also have
    a low intrinsic dimension and topical clusters, which is what makes HNSW recall meaningful.

    Text: 40-80 words per chunk, Zipf-distributed over the vocabulary, 15% of them drawn from
    the chunk's cluster's 8 topic words (mid-frequency words), so keyword and vector rankings
    agree partly, as on real data. Queries: fresh samples of the same distribution; their text
    is 2 topic words of their cluster and 3 general words (which may be stop words).
    """
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, latent_dim))
    basis, _ = np.linalg.qr(rng.standard_normal((DIM, latent_dim)))  # orthonormal columns

    def sample(count: int) -> tuple[np.ndarray, np.ndarray]:
        labels = rng.integers(clusters, size=count)
        out = np.empty((count, DIM), dtype=np.float32)
        for start in range(0, count, 10_000):  # bounded memory: 10k x 384 float64 at a time
            part = labels[start : start + 10_000]
            latent = centres[part] + spread * rng.standard_normal((part.size, latent_dim))
            full = latent @ basis.T + noise * rng.standard_normal((part.size, DIM))
            out[start : start + part.size] = _unit(full)
        return out, labels

    vectors, labels = sample(n)
    query_vectors, query_labels = sample(queries)

    words = vocab.words
    low, high = min(1500, len(words) // 4), min(15_000, len(words))
    topics = rng.integers(low, high, size=(clusters, TOPIC_WORDS))
    lengths = rng.integers(40, 81, size=n)
    general = vocab.zipf_ranks(rng, int(lengths.sum()))
    topical = rng.random(int(lengths.sum())) < 0.15
    topic_pick = rng.integers(TOPIC_WORDS, size=int(lengths.sum()))
    texts: list[str] = []
    titles: list[str] = []
    offset = 0
    for i in range(n):
        end = offset + int(lengths[i])
        topic = topics[labels[i]]
        ids = np.where(topical[offset:end], topic[topic_pick[offset:end]], general[offset:end])
        texts.append(" ".join(words[j] for j in ids))
        if i % CHUNKS_PER_DOCUMENT == 0:
            title = f"Document {i // CHUNKS_PER_DOCUMENT} {words[topic[0]]} {words[topic[1]]}"
        titles.append(title)
        offset = end

    query_texts: list[str] = []
    for label in query_labels:
        picked = [int(w) for w in rng.choice(topics[label], size=2, replace=False)]
        picked += [int(w) for w in vocab.zipf_ranks(rng, 3)]
        rng.shuffle(picked)
        query_texts.append(" ".join(words[j] for j in picked))

    params = {
        "chunks": n,
        "dimensions": DIM,
        "clusters": clusters,
        "latent_dim": latent_dim,
        "spread": spread,
        "noise": noise,
        "seed": seed,
        "words_per_chunk": "40-80",
        "queries": queries,
    }
    return Corpus(vectors, texts, titles, query_vectors, query_texts, params)


def row_key(i: int) -> tuple[str, int]:
    return f"doc{i // CHUNKS_PER_DOCUMENT:06d}", i % CHUNKS_PER_DOCUMENT


def row_index(document_id: str, chunk_index: int) -> int:
    return int(document_id.removeprefix("doc")) * CHUNKS_PER_DOCUMENT + chunk_index


# -- loading ---------------------------------------------------------------------------------


async def load(pool: asyncpg.Pool, corpus: Corpus) -> dict[str, float]:
    """COPY the rows with the vector and full-text indexes dropped, then build them again from
    their own definitions (as `ensure_schema` created them) and VACUUM ANALYZE."""
    timings: dict[str, float] = {}
    async with pool.acquire() as conn:
        defs = await conn.fetch(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'chunks'"
            " AND indexname <> 'chunks_pkey'"
        )
        for row in defs:
            await conn.execute(f'DROP INDEX "{row["indexname"]}"')
        started = time.perf_counter()
        columns = [
            "tenant_id", "document_id", "chunk_index", "sha256", "content_hash",
            "title", "source", "text", "embedding",
        ]  # fmt: skip
        batch = 5_000
        for start in range(0, len(corpus.texts), batch):
            records = []
            for i in range(start, min(start + batch, len(corpus.texts))):
                doc, idx = row_key(i)
                records.append(
                    (TENANT, doc, idx, "0" * 64, f"{i:032x}", corpus.titles[i], "bench",
                     corpus.texts[i], corpus.vectors[i])
                )  # fmt: skip
            await conn.copy_records_to_table("chunks", records=records, columns=columns)
        timings["copy_s"] = time.perf_counter() - started
        # Enough memory for the HNSW graph to be built in memory (a load-time setting only).
        await conn.execute("SET maintenance_work_mem = '1GB'")
        for row in defs:
            started = time.perf_counter()
            await conn.execute(row["indexdef"])
            timings[f"index_{row['indexname']}_s"] = time.perf_counter() - started
        started = time.perf_counter()
        await conn.execute("VACUUM ANALYZE chunks")
        timings["vacuum_analyze_s"] = time.perf_counter() - started
        # Flush the load's dirty pages now, or the checkpoint it triggered keeps writing for
        # minutes (checkpoint_completion_target) while the queries are being timed.
        started = time.perf_counter()
        await conn.execute("CHECKPOINT")
        timings["checkpoint_s"] = time.perf_counter() - started
    return timings


async def server_facts(pool: asyncpg.Pool) -> dict[str, Any]:
    async with pool.acquire() as conn:
        return {
            "server_version": await conn.fetchval("SHOW server_version"),
            "pgvector": await conn.fetchval(
                "SELECT extversion FROM pg_extension WHERE extname = 'vector'"
            ),
            "shared_buffers": await conn.fetchval("SHOW shared_buffers"),
            "hnsw.ef_search": await conn.fetchval("SHOW hnsw.ef_search"),
            # create_pool's init sets relaxed_order on each new connection; this shows what a
            # pooled connection has once it has been released and acquired again.
            "hnsw.iterative_scan_on_reused_pool_connection": await conn.fetchval(
                "SHOW hnsw.iterative_scan"
            ),
            "pool_max_size": pool.get_max_size(),
            "table_size": await conn.fetchval(
                "SELECT pg_size_pretty(pg_total_relation_size('chunks'))"
            ),
            "hnsw_index_size": await conn.fetchval(
                "SELECT pg_size_pretty(pg_relation_size('chunks_embedding_hnsw'))"
            ),
        }


# -- the SQL the service sends ---------------------------------------------------------------

HYBRID = hybrid_sql("")
VECTOR = vector_sql("")
KEYWORD = keyword_sql("")


async def sql_search(
    conn: asyncpg.Connection | asyncpg.Pool, mode: str, vector: list[float], text: str
) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record]
    if mode == "hybrid":
        rows = await conn.fetch(HYBRID, TENANT, vector, text, TOP_K)
    elif mode == "keyword":
        rows = await conn.fetch(KEYWORD, TENANT, text, TOP_K)
    else:
        rows = await conn.fetch(VECTOR, TENANT, vector, TOP_K)
    return rows


async def plans(pool: asyncpg.Pool, vector: list[float], text: str) -> dict[str, Any]:
    """EXPLAIN of each mode: does the vector part use the HNSW index?"""
    out: dict[str, Any] = {}
    async with pool.acquire() as conn:
        for mode, sql, params in (
            ("hybrid", HYBRID, (TENANT, vector, text, TOP_K)),
            ("vector", VECTOR, (TENANT, vector, TOP_K)),
        ):
            rows = await conn.fetch(f"EXPLAIN {sql}", *params)
            lines = [r[0] for r in rows]
            out[mode] = {
                "uses_hnsw": any("chunks_embedding_hnsw" in line for line in lines),
                "plan": lines,
            }
    return out


async def keyword_matches(pool: asyncpg.Pool, texts: list[str]) -> tuple[list[int], list[int]]:
    """Per query: how many chunks its OR-ed terms match (what `keyword` mode ranks), and how
    many hybrid's keyword half ranks (the chunks holding its rarer terms, search.py)."""
    tsq = (
        "to_tsquery('simple', array_to_string("
        "tsvector_to_array(to_tsvector('english', $2)), ' | '))"
    )
    candidates = (
        f"WITH {keyword_terms_sql(KEYWORD_BUDGET).replace('$3', '$2')}"
        " SELECT count(*) FROM chunks, q WHERE tenant_id = $1 AND tsv @@ q.match_q"
    )
    matched: list[int] = []
    ranked: list[int] = []
    async with pool.acquire() as conn:
        for text in texts:
            matched.append(
                await conn.fetchval(
                    f"SELECT count(*) FROM chunks WHERE tenant_id = $1 AND tsv @@ {tsq}",
                    TENANT,
                    text,
                )
            )
            ranked.append(await conn.fetchval(candidates, TENANT, text))
    return matched, ranked


MATCH_BUCKETS = [(0, 250), (250, 500), (500, 1_000), (1_000, 10**12)]


def by_matches(res: LoadResult, matches: list[int]) -> list[dict[str, Any]]:
    """Latency of a closed-loop run split by how many chunks hybrid's keyword half ranks."""
    out = []
    for low, high in MATCH_BUCKETS:
        picked = [
            lat
            for lat, i in zip(res.latencies_s, res.indices, strict=True)
            if low <= matches[i % len(matches)] < high
        ]
        label = f">= {low:,}" if high >= 10**12 else f"{low:,} - {high - 1:,}"
        out.append({"matching_chunks": label, **summarize(picked)})
    return out


def local_intrinsic_dimension(vectors: np.ndarray, sample: int = 300, k: int = 20) -> float:
    """Median MLE (Levina-Bickel) local intrinsic dimensionality over `sample` points: how hard
    the data is for ANN (real all-MiniLM-L6-v2 embeddings measure in the teens)."""
    queries = vectors[:sample]
    sims = queries @ vectors.T
    sims[np.arange(len(queries)), np.arange(len(queries))] = -np.inf  # not its own neighbour
    top = -np.sort(-sims, axis=1)[:, :k]
    dist = np.sqrt(np.maximum(2.0 - 2.0 * top, 1e-12))
    lid = -1.0 / np.mean(np.log(dist[:, :-1] / dist[:, -1:]), axis=1)
    return float(np.median(lid))


# -- recall ----------------------------------------------------------------------------------


def exact_top_k(corpus: Corpus) -> tuple[np.ndarray, np.ndarray]:
    """Brute-force cosine top-k (vectors are unit length: cosine = dot), and the k-th
    similarity of each query (to accept an equally distant neighbour as correct)."""
    sims = corpus.query_vectors @ corpus.vectors.T  # (q, n) float32; q is small
    top = np.argpartition(-sims, TOP_K, axis=1)[:, :TOP_K]
    kth = np.take_along_axis(sims, top, axis=1).min(axis=1)
    return top, kth


def recall_of(ids: list[int], truth: np.ndarray, kth: float, corpus: Corpus, q: int) -> float:
    truth_set = set(truth.tolist())
    hits = 0
    for i in ids[:TOP_K]:
        if i in truth_set or float(corpus.query_vectors[q] @ corpus.vectors[i]) >= kth - 1e-6:
            hits += 1
    return hits / TOP_K


async def connect(dsn: str) -> asyncpg.Connection:
    conn = await asyncpg.connect(dsn)
    await register_vector(conn)
    # Load pgvector's library in this session, so that its hnsw.* settings exist.
    await conn.execute("SELECT '[1]'::vector")
    return conn


async def measure_recall(
    pool: asyncpg.Pool, dsn: str, corpus: Corpus, queries: int, ef_values: list[int]
) -> dict[str, Any]:
    truth, kth = exact_top_k(corpus)
    qs = range(min(queries, len(corpus.query_texts)))
    vectors = [corpus.query_vectors[q].tolist() for q in qs]
    out: dict[str, Any] = {"queries": len(qs)}

    # Vector mode as the service runs it (pool connections: default ef_search).
    recalls = []
    for q in qs:
        rows = await sql_search(pool, "vector", vectors[q], corpus.query_texts[q])
        ids = [row_index(r["document_id"], r["chunk_index"]) for r in rows]
        recalls.append(recall_of(ids, truth[q], float(kth[q]), corpus, q))
    out["vector_recall_at_10"] = float(np.mean(recalls))

    # Exact searches run on a connection of their own, closed afterwards: PostgreSQL keeps a
    # prepared statement's generic plan when settings change, so a plan made with index scans
    # off must never be reused by the approximate searches.
    conn = await connect(dsn)
    try:
        # Cross-check the numpy ground truth with PostgreSQL's own exact search (a sequential
        # scan: index scans off) on a few queries.
        agree = []
        exact_hybrid: list[set[tuple[str, int]]] = []
        for q in qs:
            async with conn.transaction():
                await conn.execute("SET LOCAL enable_indexscan = off")
                if q < 20:
                    rows = await sql_search(conn, "vector", vectors[q], corpus.query_texts[q])
                    ids = [row_index(r["document_id"], r["chunk_index"]) for r in rows]
                    agree.append(recall_of(ids, truth[q], float(kth[q]), corpus, q))
                rows = await sql_search(conn, "hybrid", vectors[q], corpus.query_texts[q])
                exact_hybrid.append({(r["document_id"], r["chunk_index"]) for r in rows})
        out["sql_exact_vs_numpy_agreement"] = float(np.mean(agree))
    finally:
        await conn.close()

    # Fresh plans, and the settings a pooled connection of the service has after RESET ALL:
    # the database defaults (see server_facts).
    conn = await connect(dsn)
    try:
        service_scan = str(await conn.fetchval("SHOW hnsw.iterative_scan"))
        service_ef = int(await conn.fetchval("SHOW hnsw.ef_search"))
        out["service_settings"] = {"ef_search": service_ef, "iterative_scan": service_scan}

        async def with_settings(ef: int, scan: str) -> dict[str, Any]:
            """Vector and hybrid recall@10 and vector SQL p50 with these HNSW settings."""
            await conn.execute(f"SET hnsw.ef_search = {int(ef)}")
            await conn.execute(f"SET hnsw.iterative_scan = {scan}")
            vector_recalls, hybrid_recalls, latencies = [], [], []
            for q in qs:
                started = time.perf_counter()
                rows = await sql_search(conn, "vector", vectors[q], corpus.query_texts[q])
                latencies.append(time.perf_counter() - started)
                ids = [row_index(r["document_id"], r["chunk_index"]) for r in rows]
                vector_recalls.append(recall_of(ids, truth[q], float(kth[q]), corpus, q))
                rows = await sql_search(conn, "hybrid", vectors[q], corpus.query_texts[q])
                got = {(r["document_id"], r["chunk_index"]) for r in rows}
                hybrid_recalls.append(len(got & exact_hybrid[q]) / max(1, len(exact_hybrid[q])))
            return {
                "ef_search": ef,
                "iterative_scan": scan,
                "vector_recall_at_10": float(np.mean(vector_recalls)),
                "hybrid_recall_at_10": float(np.mean(hybrid_recalls)),
                "vector_sql_p50_ms": summarize(latencies)["p50_ms"],
            }

        sweep = [await with_settings(ef, service_scan) for ef in ef_values]
        at_service = next((x for x in sweep if x["ef_search"] == service_ef), None)
        if at_service is None:
            at_service = await with_settings(service_ef, service_scan)
            sweep.append(at_service)
        out["hybrid_recall_at_10"] = at_service["hybrid_recall_at_10"]
        # The other iterative-scan setting at the service's ef_search: with it off, hybrid's
        # 50 vector candidates are cut to ef_search (40) rows.
        other = "off" if service_scan != "off" else "relaxed_order"
        sweep.append(await with_settings(service_ef, other))
        out["ef_search_sweep"] = sweep
    finally:
        await conn.close()
    return out


# -- latency ---------------------------------------------------------------------------------


async def run_load(
    call: Any, requests: int, concurrency: int, warmup: int, queries: int
) -> LoadResult:
    """Warm up, then a closed loop of `requests` calls cycling over the query set."""
    await closed_loop(lambda i: call((i * 7919) % queries), warmup, concurrency)
    with foreign_load() as other:
        res = await closed_loop(lambda i: call(i % queries), requests, concurrency)
    res.other_cpu_share = other.share
    return res


async def sql_level(
    pool: asyncpg.Pool,
    corpus: Corpus,
    modes: list[str],
    levels: list[int],
    args: Any,
    matches: list[int],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The modes at every concurrency, then keyword alone at concurrency 1 (hybrid's other
    half, as a diagnostic). Also returns hybrid's c=1 latency by number of matching chunks."""
    vectors = [v.tolist() for v in corpus.query_vectors]
    results = []
    buckets: list[dict[str, Any]] = []
    runs = [(mode, c) for mode in modes for c in levels]
    if "hybrid" in modes:
        runs.append(("keyword", 1))
    for mode, c in runs:

        async def call(q: int, mode: str = mode) -> bool:
            rows = await sql_search(pool, mode, vectors[q], corpus.query_texts[q])
            return len(rows) > 0

        requests = args.requests_c1 if c == 1 else args.requests
        res = await run_load(call, requests, c, max(20, 2 * c), len(vectors))
        results.append({"level": "sql", "mode": mode, "concurrency": c, **res.report()})
        print(f"  sql {mode:7} c={c:<3} {fmt(res)}")
        if mode == "hybrid" and c == 1:
            buckets = by_matches(res, matches)
    return results, buckets


async def embedding_baseline(corpus: Corpus, levels: list[int], args: Any) -> list[dict[str, Any]]:
    model = RetrievalSettings.model_fields["embedding_model"].default
    results = []
    for c in levels:

        async def call(q: int) -> bool:
            out = await embed([corpus.query_texts[q]], model, dimensions=DIM)
            return len(out.vectors) == 1

        requests = args.requests_c1 if c == 1 else args.requests
        res = await run_load(call, requests, c, max(20, 2 * c), len(corpus.query_texts))
        results.append({"level": "embed", "mode": "query", "concurrency": c, **res.report()})
        print(f"  raw query embedding c={c:<3} {fmt(res)}")
    return results


async def e2e_level(
    nats_url: str, corpus: Corpus, modes: list[str], levels: list[int], args: Any
) -> list[dict[str, Any]]:
    nc = await nats.connect(nats_url)
    results = []
    try:
        for mode in modes:
            payloads = [
                SearchRequest(tenant_id=TENANT, query=text, mode=mode, top_k=TOP_K)  # type: ignore[arg-type]
                .model_dump_json()
                .encode()
                for text in corpus.query_texts
            ]
            for c in levels:
                service_ms: list[float] = []

                async def call(
                    q: int, payloads: list[bytes] = payloads, service_ms: list[float] = service_ms
                ) -> bool:
                    reply = await nc.request(s.RETRIEVAL_SEARCH, payloads[q], timeout=60)
                    result = SearchResult.model_validate_json(reply.data)
                    if result.error is None and result.hits:
                        service_ms.append(result.took_ms)
                        return True
                    return False

                requests = args.requests_c1 if c == 1 else args.requests
                res = await run_load(call, requests, c, max(20, 2 * c), len(payloads))
                took = summarize([ms / 1e3 for ms in service_ms[-len(res.latencies_s) :]])
                results.append(
                    {
                        "level": "e2e",
                        "mode": mode,
                        "concurrency": c,
                        **res.report(),
                        "searcher_took_p50_ms": took.get("p50_ms", math.nan),
                    }
                )
                print(f"  e2e {mode:6} c={c:<3} {fmt(res)}")
    finally:
        await nc.close()
    return results


def fmt(res: LoadResult) -> str:
    r = res.report()
    return (
        f"p50 {r.get('p50_ms', math.nan):7.2f} ms  p99 {r.get('p99_ms', math.nan):7.2f} ms  "
        f"{r['qps']:7.1f} q/s  errors {res.errors}"
        f"  (other processes' CPU share {res.other_cpu_share:.0%})"
    )


# -- main ------------------------------------------------------------------------------------


async def run(plat: Platform, corpus: Corpus, args: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    pool = await create_pool(plat.engines.postgres.url, DIM)
    try:
        print(f"loading {len(corpus.texts):,} chunks ...")
        out["load"] = await load(pool, corpus)
        print("  " + ", ".join(f"{k} {v:.1f}" for k, v in out["load"].items()))
        out["server"] = await server_facts(pool)
        print(f"  {out['server']}")
        sample = corpus.query_vectors[0].tolist()
        out["plans"] = await plans(pool, sample, corpus.query_texts[0])
        for mode, plan in out["plans"].items():
            print(f"  {mode} plan uses the HNSW index: {plan['uses_hnsw']}")
        matched, matches = await keyword_matches(pool, corpus.query_texts)
        for key, counts, label in (
            ("keyword_matches_per_query", matched, "chunks matching a query's OR-ed terms"),
            ("hybrid_keyword_candidates_per_query", matches, "chunks hybrid's keyword half ranks"),
        ):
            out[key] = {
                "p50": float(np.percentile(counts, 50)),
                "p90": float(np.percentile(counts, 90)),
                "max": max(counts),
                "all": counts,
            }
            stats = out[key]
            print(f"  {label}: p50 {stats['p50']:.0f}, p90 {stats['p90']:.0f}, max {stats['max']}")

        print("recall@10 ...")
        out["recall"] = await measure_recall(
            pool, plat.engines.postgres.url, corpus, args.recall_queries, args.ef_sweep
        )
        print(f"  {out['recall']}")

        print("level sql (the service's SQL, precomputed query vectors) ...")
        out["sql"], out["hybrid_sql_by_matches"] = await sql_level(
            pool, corpus, args.modes, args.concurrency, args, matches
        )
    finally:
        await pool.close()

    if not args.skip_e2e:
        print("baseline: raw query embedding (local/all-MiniLM-L6-v2, one query per call) ...")
        out["embed"] = await embedding_baseline(corpus, args.concurrency, args)
        print(f"level e2e (retrieval service as {args.service}, request/reply over NATS) ...")
        async with service(plat, "retrieval", args.service):
            out["e2e"] = await e2e_level(
                plat.engines.nats.url, corpus, args.modes, args.concurrency, args
            )
    return out


def report(results: dict[str, Any]) -> str:
    lines: list[str] = []
    rows = []
    for r in [*results["sql"], *results.get("embed", []), *results.get("e2e", [])]:
        rows.append(
            [
                r["level"],
                r["mode"],
                r["concurrency"],
                r["p50_ms"],
                r["p99_ms"],
                r["qps"],
                r["errors"],
                f"{r.get('other_cpu_share', 0.0):.0%}",
            ]
        )
    headers = ["level", "mode", "concurrency", "p50 ms", "p99 ms", "QPS", "errors"]
    lines.append(markdown_table([*headers, "other processes' CPU"], rows))

    # What the service adds at concurrency 1: e2e vs. its parts measured on their own.
    embed_c1 = {r["concurrency"]: r for r in results.get("embed", [])}.get(1)
    sql_by = {(r["mode"], r["concurrency"]): r for r in results["sql"]}
    parts = []
    for r in results.get("e2e", []):
        if r["concurrency"] != 1 or embed_c1 is None:
            continue
        sql = sql_by[(r["mode"], 1)]["p50_ms"]
        emb = embed_c1["p50_ms"]
        took = r["searcher_took_p50_ms"]
        parts.append(
            [
                r["mode"],
                r["p50_ms"],
                emb,
                sql,
                r["p50_ms"] - emb - sql,
                took,
                r["p50_ms"] - took,
            ]
        )
    if parts:
        lines += [
            "",
            markdown_table(
                [
                    "e2e c=1",
                    "e2e p50 ms",
                    "raw embed p50",
                    "sql p50",
                    "service adds (e2e - embed - sql)",
                    "Searcher took_ms p50",
                    "bus + service shell (e2e - took)",
                ],
                parts,
            ),
        ]

    buckets = results.get("hybrid_sql_by_matches", [])
    if buckets:
        lines += [
            "",
            markdown_table(
                ["hybrid sql c=1, chunks its keyword half ranks", "queries", "p50 ms", "p99 ms"],
                [
                    [b["matching_chunks"], b.get("n", 0), b.get("p50_ms", ""), b.get("p99_ms", "")]
                    for b in buckets
                ],
            ),
        ]

    recall = results["recall"]
    lines += [
        "",
        f"recall@10 vs exact search ({recall['queries']} queries, service settings"
        f" {recall['service_settings']}): "
        f"vector {recall['vector_recall_at_10']:.3f}, hybrid {recall['hybrid_recall_at_10']:.3f}"
        f" (PostgreSQL's exact scan agrees with the numpy ground truth: "
        f"{recall['sql_exact_vs_numpy_agreement']:.3f})",
        "",
        markdown_table(
            [
                "hnsw.ef_search",
                "hnsw.iterative_scan",
                "vector recall@10",
                "hybrid recall@10",
                "vector SQL p50 ms (c=1)",
            ],
            [
                [
                    x["ef_search"],
                    x["iterative_scan"],
                    f"{x['vector_recall_at_10']:.3f}",
                    f"{x['hybrid_recall_at_10']:.3f}",
                    x["vector_sql_p50_ms"],
                ]
                for x in recall["ef_search_sweep"]
            ],
        ),
    ]
    hybrid = sql_by.get(("hybrid", 1))
    if hybrid is not None:
        e2e = {(r["mode"], r["concurrency"]): r for r in results.get("e2e", [])}
        verdict = "met" if hybrid["p50_ms"] < 10 else "NOT met"
        text = (
            "DESIGN target hybrid p50 < 10 ms at concurrency 1: "
            f"sql level {hybrid['p50_ms']:.2f} ms ({verdict})"
        )
        if ("hybrid", 1) in e2e:
            p50 = e2e[("hybrid", 1)]["p50_ms"]
            text += f", e2e {p50:.2f} ms ({'met' if p50 < 10 else 'NOT met'})"
        lines += ["", text]
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.retrieval_latency", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--chunks", type=int, default=100_000, help="rows in the chunks table")
    parser.add_argument("--queries", type=int, default=200, help="distinct queries (cycled)")
    parser.add_argument(
        "--requests", type=int, default=1000, help="timed requests per run at concurrency > 1"
    )
    parser.add_argument(
        "--requests-c1", type=int, default=400, help="timed requests per run at concurrency 1"
    )
    parser.add_argument("--concurrency", type=positive_ints, default=[1, 16])
    parser.add_argument(
        "--modes", type=lambda t: t.split(","), default=["hybrid", "vector"], help="hybrid,vector"
    )
    parser.add_argument("--recall-queries", type=int, default=200)
    parser.add_argument(
        "--ef-sweep", type=positive_ints, default=[10, 20, 40, 100], help="hnsw.ef_search values"
    )
    parser.add_argument("--clusters", type=int, default=1000)
    parser.add_argument("--latent-dim", type=int, default=32)
    parser.add_argument("--spread", type=float, default=0.5)
    parser.add_argument("--noise", type=float, default=0.05)
    parser.add_argument("--skip-e2e", action="store_true", help="only the SQL level")
    add_common_arguments(parser)
    args = parser.parse_args(argv)
    if any(m not in ("hybrid", "vector") for m in args.modes):
        parser.error("--modes takes hybrid and/or vector")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    json_path = args.json.resolve() if args.json else None
    isolate_environment()
    info = machine_info()
    print(f"machine: {info}")
    started = time.perf_counter()
    vocab = Vocabulary.load()  # also loads the embedding model once, before any timing
    corpus = make_corpus(
        vocab,
        args.chunks,
        args.queries,
        args.clusters,
        args.latent_dim,
        args.spread,
        args.noise,
        args.seed,
    )
    corpus.params["local_intrinsic_dimension"] = local_intrinsic_dimension(corpus.vectors)
    print(
        f"generated {args.chunks:,} chunks in {time.perf_counter() - started:.1f}s; local"
        f" intrinsic dimension of the vectors {corpus.params['local_intrinsic_dimension']:.1f}"
    )
    with bench_root(args.keep) as root, engines(root) as plat:
        results = asyncio.run(run(plat, corpus, args))
    results["corpus"] = corpus.params
    results["machine"] = {**info, "load_average_at_end": round(os.getloadavg()[0], 2)}
    results["command"] = " ".join(["python -m bench.retrieval_latency", *(argv or sys.argv[1:])])
    results["service_mode"] = args.service
    results["wall_s"] = time.perf_counter() - started
    print()
    print(report(results))
    print(f"\ntotal {results['wall_s']:.0f}s")
    write_json(json_path, results)


if __name__ == "__main__":
    main()
