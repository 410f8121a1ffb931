"""Ingestion efficiency: chunks/s of the full ingest pipeline vs. raw embedding of the same chunks.

Full pipeline: the real ingest service (its own process by default, or in this process), fed
through the bus exactly as an external system does it — `agentbus.runtime.clients.ingest.submit`
(bytes into the `documents` object store, `IngestRequested` on `agentbus.v1.ingest.submit`), then
`follow` until `DocumentIndexed` — over generated text and Markdown documents: fetch, parse, chunk,
embed, stage, swap into `chunks` (HNSW + GIN), entity extraction and graph write.

Baseline, in the same run on the same machine: `agentbus.runtime.llm.embeddings.embed` over
exactly the chunk texts the worker produces (`parse` + `chunk_document` with the same pipeline
config), in the same per-document batches of `embedding.batch_size`, one call after another as
the worker does. The model is loaded and warmed before anything is timed, in both places.

efficiency = pipeline chunks/s / raw chunks/s (DESIGN §8: overhead under 10%, i.e. >= 90%).
Raw and pipeline passes alternate (ABBA) so drift on the machine affects both alike. Where the
pipeline's time goes comes from the service's own `IngestProgress` events (stage timestamps)
and its `LlmUsage` telemetry (the latency of every `embed()` call inside the service).

Run: `.venv/bin/python -m bench.ingest_throughput [--docs 20] [--chunks-per-doc 100] [--json f]`;
`--pdf-pages 200` sends one generated PDF of that many pages instead of the text files.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml  # type: ignore[import-untyped]

if __package__ in (None, ""):  # `python bench/ingest_throughput.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import nats
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from agentbus.contracts import DocumentIndexed, IngestFailed, IngestProgress, LlmUsage
from agentbus.contracts import subjects as s
from agentbus.ingest.chunking import chunk_document
from agentbus.ingest.config import PipelineConfig, load_pipeline_config
from agentbus.ingest.extraction import extract
from agentbus.ingest.parsing import parse
from agentbus.runtime.clients.ingest import IngestEvent, content_type, follow, submit
from agentbus.runtime.llm.embeddings import embed
from agentbus.runtime.platform import Platform
from agentbus.runtime.stores.knowledge_graph import async_driver
from bench.common import (
    ForeignLoad,
    Vocabulary,
    add_common_arguments,
    bench_root,
    engines,
    foreign_load,
    isolate_environment,
    machine_info,
    markdown_table,
    service,
    summarize,
    write_json,
)

# -- corpus ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Document:
    filename: str
    data: bytes
    chunks: list[str]  # the chunk texts the worker will embed, in order


class TextGenerator:
    """Prose-like text: sentences of Zipf-distributed English words; a share `entity_rate` of
    sentences also names one of 60 recurring people/places and a third as many mention one of
    30 code identifiers (work for the entity extractor). Markdown files also get headings and
    bullet lists."""

    def __init__(self, vocab: Vocabulary, seed: int, entity_rate: float) -> None:
        self.vocab = vocab
        self.rng = np.random.default_rng(seed)
        self.entity_rate = entity_rate
        words = vocab.words
        pick = self.rng.integers(800, min(12_000, len(words)), size=(60, 2))
        self.names = [f"{words[a].capitalize()} {words[b].capitalize()}" for a, b in pick]
        ids = self.rng.integers(300, min(6_000, len(words)), size=(30, 2))
        self.identifiers = [f"{words[a]}_{words[b]}" for a, b in ids]

    def sentence(self) -> str:
        n = int(self.rng.integers(8, 23))
        words = [self.vocab.words[i] for i in self.vocab.zipf_ranks(self.rng, n)]
        if self.rng.random() < self.entity_rate:
            words.insert(int(self.rng.integers(0, n)), str(self.rng.choice(self.names)))
        if self.rng.random() < self.entity_rate / 3:
            words.insert(int(self.rng.integers(0, n)), f"`{self.rng.choice(self.identifiers)}`")
        words[0] = words[0][:1].upper() + words[0][1:]
        return " ".join(words) + "."

    def document(self, words: int, markdown: bool) -> str:
        parts: list[str] = []
        if markdown:
            parts.append(f"# {self.title()}")
        count = 0
        while count < words:
            if markdown and self.rng.random() < 0.2:
                parts.append(f"## {self.title()}")
            if markdown and self.rng.random() < 0.1:
                items = [f"- {self.sentence()}" for _ in range(int(self.rng.integers(2, 6)))]
                parts.append("\n".join(items))
            paragraph = " ".join(self.sentence() for _ in range(int(self.rng.integers(3, 8))))
            parts.append(paragraph)
            count += paragraph.count(" ") + 1
        return "\n\n".join(parts) + "\n"

    def title(self) -> str:
        ids = self.vocab.zipf_ranks(self.rng, int(self.rng.integers(2, 5)))
        return " ".join(self.vocab.words[i] for i in ids).capitalize()


def chunk_texts(data: bytes, filename: str, cfg: PipelineConfig) -> list[str]:
    parsed = parse(data, filename, content_type(Path(filename)))
    return [c.text for c in chunk_document(parsed, cfg.chunking)]


def make_corpus(
    vocab: Vocabulary,
    docs: int,
    chunks_per_doc: int,
    cfg: PipelineConfig,
    seed: int,
    entity_rate: float,
) -> list[Document]:
    """`docs` files alternating .md and .txt, each sized to about `chunks_per_doc` chunks."""
    gen = TextGenerator(vocab, seed, entity_rate)
    # Calibrate words per chunk on one sample of each kind, then size every document.
    words_per_chunk: dict[bool, float] = {}
    for markdown in (False, True):
        name = "calibrate.md" if markdown else "calibrate.txt"
        sample = gen.document(4000, markdown)
        n = len(chunk_texts(sample.encode(), name, cfg))
        words_per_chunk[markdown] = (sample.count(" ") + 1) / max(1, n)
    out = []
    for i in range(docs):
        markdown = i % 2 == 0
        filename = f"doc{i:03d}.{'md' if markdown else 'txt'}"
        text = gen.document(int(chunks_per_doc * words_per_chunk[markdown]), markdown)
        data = text.encode()
        out.append(Document(filename, data, chunk_texts(data, filename, cfg)))
    return out


def make_pdf_manual(
    vocab: Vocabulary,
    pages: int,
    words_per_page: int,
    cfg: PipelineConfig,
    seed: int,
    entity_rate: float,
) -> Document:
    """One PDF of `pages` pages of about `words_per_page` words each (a dense manual page), built
    with fpdf2: the ingest issue's "200-page PDF" case. PDFs are chunked page by page."""
    from fpdf import FPDF  # a dev dependency: only this mode needs it

    gen = TextGenerator(vocab, seed, entity_rate)
    pdf = FPDF()
    pdf.set_title("Generated operations manual")
    pdf.set_font("Helvetica", size=9)
    pdf.set_auto_page_break(False)
    for _ in range(pages):
        pdf.add_page()
        text = gen.document(words_per_page, markdown=False)
        pdf.multi_cell(0, 4, text.encode("latin-1", "replace").decode("latin-1"))
    data = bytes(pdf.output())
    return Document("manual.pdf", data, chunk_texts(data, "manual.pdf", cfg))


def batches(doc: Document, size: int) -> list[list[str]]:
    return [doc.chunks[i : i + size] for i in range(0, len(doc.chunks), size)]


# -- raw baseline ----------------------------------------------------------------------------


@dataclass
class RawPass:
    chunks: int
    wall_s: float
    batch_ms: list[float]
    other_load: float = 0.0  # share of the CPU used by other processes meanwhile

    @property
    def rate(self) -> float:
        return self.chunks / self.wall_s


async def raw_pass(docs: list[Document], cfg: PipelineConfig) -> RawPass:
    model, dims, size = cfg.embedding.model, cfg.embedding.dimensions, cfg.embedding.batch_size
    latencies: list[float] = []
    started = time.perf_counter()
    for doc in docs:
        for batch in batches(doc, size):
            result = await embed(batch, model, dimensions=dims)
            latencies.append(result.latency_ms)
    wall = time.perf_counter() - started
    return RawPass(sum(len(d.chunks) for d in docs), wall, latencies)


# -- the pipeline ----------------------------------------------------------------------------


@dataclass
class Followed:
    document: Document
    events: list[tuple[IngestEvent, float]] = field(default_factory=list)  # (event, received)

    @property
    def outcome(self) -> IngestEvent:
        return self.events[-1][0]


@dataclass
class PipelinePass:
    chunks: int
    wall_s: float
    started_at: float
    finished_at: float
    docs: list[Followed]
    usage: list[LlmUsage]
    other_load: float = 0.0  # share of the CPU used by other processes meanwhile

    @property
    def rate(self) -> float:
        return self.chunks / self.wall_s


async def _follow(
    nc: NatsClient, doc: Document, document_id: str, sha: str, timeout: float
) -> Followed:
    out = Followed(doc)
    async for event in follow(nc, document_id, sha256=sha, timeout=timeout):
        out.events.append((event, time.time()))
    return out


async def _watch_engines(plat: Platform) -> None:
    """Fail fast when an engine dies under the pipeline instead of waiting out the worker's
    retries (5 attempts with back-off)."""
    while True:
        for engine in (plat.engines.graph, plat.engines.postgres, plat.engines.nats):
            if not engine.is_running():
                log = engine.log_path.read_text(errors="replace")
                cause = next(
                    (
                        line
                        for line in log.splitlines()
                        if "stack smashing" in line or "crashed by signal" in line
                    ),
                    engine.last_log_line(),
                )
                raise RuntimeError(
                    f"the {engine.name} engine died during the run: {cause.strip()}"
                    f" (log: {engine.log_path}; keep it with --keep)"
                )
        await asyncio.sleep(0.5)


async def pipeline_pass(
    plat: Platform,
    nc: NatsClient,
    docs: list[Document],
    tenant: str,
    tag: str,
    timeout: float,
) -> PipelinePass:
    usage: list[LlmUsage] = []

    async def on_usage(msg: Msg) -> None:
        event = LlmUsage.model_validate_json(msg.data)
        if event.tenant_id == tenant:
            usage.append(event)

    sub = await nc.subscribe(s.TELEMETRY_LLM_USAGE, cb=on_usage)
    try:
        started_at, started = time.time(), time.perf_counter()
        tasks = []
        for doc in docs:
            submitted = await submit(
                nc, tenant, doc.data, filename=doc.filename, source=f"{tag}/{doc.filename}"
            )
            if submitted.duplicate:
                raise RuntimeError(f"{doc.filename} was deduplicated; use a fresh tag")
            tasks.append(
                asyncio.create_task(
                    _follow(nc, doc, submitted.document_id, submitted.sha256, timeout)
                )
            )
        watchdog = asyncio.create_task(_watch_engines(plat))
        everything = asyncio.gather(*tasks)
        try:
            racing: set[asyncio.Future[Any]] = {watchdog, everything}
            await asyncio.wait(racing, return_when=asyncio.FIRST_COMPLETED)
            if watchdog.done():
                everything.cancel()
                await asyncio.gather(everything, return_exceptions=True)
                watchdog.result()  # raises: an engine died
            followed = everything.result()
        finally:
            watchdog.cancel()
        wall = time.perf_counter() - started
        await nc.flush()
        await asyncio.sleep(0.2)  # the last LlmUsage may trail the last DocumentIndexed
    finally:
        await sub.unsubscribe()
    for f in followed:
        outcome = f.outcome
        if isinstance(outcome, IngestFailed):
            raise RuntimeError(f"{f.document.filename} failed: {outcome.stage}: {outcome.reason}")
        assert isinstance(outcome, DocumentIndexed)
        if outcome.unchanged or outcome.chunks != len(f.document.chunks):
            raise RuntimeError(
                f"{f.document.filename}: indexed {outcome.chunks} chunks (unchanged="
                f"{outcome.unchanged}), the baseline embeds {len(f.document.chunks)}"
            )
    finished_at = max(f.events[-1][1] for f in followed)
    chunks = sum(len(d.chunks) for d in docs)
    return PipelinePass(chunks, wall, started_at, finished_at, list(followed), usage)


STAGES = [
    ("submit + queue, before the first document", "before"),
    ("fetch + parse", "parse"),
    ("chunk", "chunk"),
    ("prepare (document row, staged lookup)", "prepare"),
    ("embed() calls inside the service", "embed"),
    ("per batch: stage rows + progress/usage events", "batch_other"),
    ("swap into chunks (HNSW, GIN) + stored event", "swap"),
    ("graph: extract + write + mark indexed", "graph"),
    ("DocumentIndexed event", "finish"),
    ("between documents (ack, next pull)", "between"),
    ("last event to the client", "after"),
]


def stage_breakdown(run: PipelinePass) -> dict[str, float]:
    """Seconds per stage, summed over documents, from the service's own event timestamps."""
    totals: defaultdict[str, float] = defaultdict(float)
    spans = []
    for f in run.docs:
        ts: dict[str, float] = {}
        embedded: list[float] = []
        for event, _received in f.events:
            t = event.ts.timestamp()
            if isinstance(event, IngestProgress):
                if event.stage == "embedded":
                    embedded.append(t)
                else:
                    ts.setdefault(event.stage, t)
            elif isinstance(event, DocumentIndexed):
                ts["indexed"] = t
        calls = sum(
            u.latency_ms / 1e3
            for u in run.usage
            if ts["chunked"] <= u.ts.timestamp() <= ts["stored"]
        )
        totals["parse"] += ts["parsed"] - ts["received"]
        totals["chunk"] += ts["chunked"] - ts["parsed"]
        totals["prepare"] += embedded[0] - ts["chunked"]
        totals["embed"] += calls
        totals["batch_other"] += (embedded[-1] - embedded[0]) - calls
        totals["swap"] += ts["stored"] - embedded[-1]
        totals["graph"] += ts["graphed"] - ts["stored"]
        totals["finish"] += ts["indexed"] - ts["graphed"]
        spans.append((ts["received"], ts["indexed"]))
    spans.sort()
    totals["before"] = spans[0][0] - run.started_at
    totals["between"] = sum(b[0] - a[1] for a, b in itertools.pairwise(spans))
    totals["after"] = run.finished_at - spans[-1][1]
    return dict(totals)


async def bolt_round_trips(url: str, n: int = 20) -> dict[str, float]:
    """p50 of a trivial query to the graph engine, the way GraphWriter.run sends every
    statement (`driver.execute_query`) and through an explicit session."""
    driver = async_driver(url)
    out: dict[str, float] = {}
    try:

        async def execute_query() -> None:
            await driver.execute_query("RETURN 1")

        async def session_write() -> None:
            async with driver.session() as session:
                await session.execute_write(lambda tx: tx.run("RETURN 1"))

        for name, call in (("execute_query", execute_query), ("session", session_write)):
            await call()  # connect
            times = []
            for _ in range(n):
                started = time.perf_counter()
                await call()
                times.append(time.perf_counter() - started)
            out[f"{name}_p50"] = summarize(times)["p50_ms"]
    finally:
        await driver.close()
    return out


def rate(chunks: int, wall_s: float, other: ForeignLoad) -> str:
    return (
        f"{chunks} chunks in {wall_s:6.1f}s = {chunks / wall_s:6.1f} chunks/s"
        f"  (other processes used {other.share * 100:.0f}% of the CPU meanwhile)"
    )


# -- main ------------------------------------------------------------------------------------


async def measure(
    plat: Platform, docs: list[Document], cfg: PipelineConfig, args: Any
) -> dict[str, Any]:
    nc = await nats.connect(plat.engines.nats.url)
    raws: list[RawPass] = []
    pipes: list[PipelinePass] = []
    try:
        print("warming up: raw embedding and one document through the pipeline ...")
        await raw_pass(docs[:1], cfg)
        async with service(plat, "ingest", args.service):
            await pipeline_pass(plat, nc, docs[:1], "warmup", "warmup", args.timeout)
            for rep in range(args.repeats):
                order = ["raw", "pipeline"] if rep % 2 == 0 else ["pipeline", "raw"]
                for what in order:
                    if what == "raw":
                        with foreign_load() as other:
                            r = await raw_pass(docs, cfg)
                        r.other_load = other.share
                        raws.append(r)
                        print(f"  rep {rep} raw:      {rate(r.chunks, r.wall_s, other)}")
                    else:
                        with foreign_load() as other:
                            p = await pipeline_pass(
                                plat, nc, docs, f"bench{rep}", f"r{rep}", args.timeout
                            )
                        p.other_load = other.share
                        pipes.append(p)
                        print(f"  rep {rep} pipeline: {rate(p.chunks, p.wall_s, other)}")
    finally:
        await nc.close()

    bolt = await bolt_round_trips(plat.engines.graph.url)

    # The graph stage's CPU part, timed alone: the worker's extract() over the same chunks.
    limit = cfg.extraction.max_entities_per_chunk
    started = time.perf_counter()
    for doc in docs:
        for text in doc.chunks:
            extract(text, limit)
    extraction_s = (time.perf_counter() - started) * len(pipes)

    raw_wall = sum(r.wall_s for r in raws)
    pipe_wall = sum(p.wall_s for p in pipes)
    chunks = sum(r.chunks for r in raws)
    stages: defaultdict[str, float] = defaultdict(float)
    for p in pipes:
        for k, v in stage_breakdown(p).items():
            stages[k] += v
    pipe_batch = [u.latency_ms for p in pipes for u in p.usage]
    raw_batch = [ms for r in raws for ms in r.batch_ms]
    return {
        "raw_chunks_per_s": chunks / raw_wall,
        "pipeline_chunks_per_s": sum(p.chunks for p in pipes) / pipe_wall,
        "efficiency": raw_wall / pipe_wall,
        "repeats": [
            {
                "raw_chunks_per_s": r.rate,
                "pipeline_chunks_per_s": p.rate,
                "efficiency": p.rate / r.rate,
                "raw_wall_s": r.wall_s,
                "pipeline_wall_s": p.wall_s,
                "raw_other_cpu_share": r.other_load,
                "pipeline_other_cpu_share": p.other_load,
            }
            for r, p in zip(raws, pipes, strict=True)
        ],
        "raw_wall_s": raw_wall,
        "pipeline_wall_s": pipe_wall,
        "stages_s": dict(stages),
        "extraction_alone_s": extraction_s,
        "bolt_round_trip_ms": bolt,
        "embed_batch_ms": {
            "raw_mean": float(np.mean(raw_batch)),
            "pipeline_mean": float(np.mean(pipe_batch)) if pipe_batch else float("nan"),
            "raw_calls": len(raw_batch),
            "pipeline_calls": len(pipe_batch),
        },
        "document_ms": {
            "p50": float(
                np.median(
                    [
                        f.outcome.duration_ms
                        for p in pipes
                        for f in p.docs
                        if isinstance(f.outcome, DocumentIndexed)
                    ]
                )
            )
        },
    }


def report(res: dict[str, Any]) -> str:
    main = markdown_table(
        ["", "chunks/s", "wall s (all repeats)"],
        [
            ["raw embed() baseline", res["raw_chunks_per_s"], res["raw_wall_s"]],
            ["full pipeline over the bus", res["pipeline_chunks_per_s"], res["pipeline_wall_s"]],
            [f"efficiency (target >= 90%): {res['efficiency'] * 100:.1f}%", "", ""],
        ],
    )
    per_rep = markdown_table(
        [
            "repeat",
            "raw chunks/s",
            "pipeline chunks/s",
            "efficiency",
            "other processes' CPU share (raw / pipeline)",
        ],
        [
            [
                i,
                r["raw_chunks_per_s"],
                r["pipeline_chunks_per_s"],
                f"{r['efficiency'] * 100:.1f}%",
                f"{r['raw_other_cpu_share']:.0%} / {r['pipeline_other_cpu_share']:.0%}",
            ]
            for i, r in enumerate(res["repeats"])
        ],
    )
    wall = res["pipeline_wall_s"]
    stages = res["stages_s"]
    rows: list[list[object]] = [
        [label, stages.get(key, 0.0), f"{stages.get(key, 0.0) / wall * 100:.1f}%"]
        for label, key in STAGES
    ]
    rows.append(
        [
            "sum of stages (vs wall)",
            sum(stages.values()),
            f"{sum(stages.values()) / wall * 100:.1f}%",
        ]
    )
    rows.append(
        [
            "(graph stage: of which extract() alone, timed in this process)",
            res["extraction_alone_s"],
            f"{res['extraction_alone_s'] / wall * 100:.1f}%",
        ]
    )
    rows.append(
        [
            "raw baseline, same chunks and batches",
            res["raw_wall_s"],
            f"{res['raw_wall_s'] / wall * 100:.1f}%",
        ]
    )
    breakdown = markdown_table(
        ["pipeline stage (all documents, all repeats)", "s", "share of wall"], rows
    )
    b = res["embed_batch_ms"]
    bolt = res["bolt_round_trip_ms"]
    batch = (
        f"graph engine round trip for `RETURN 1`: driver.execute_query (what GraphWriter.run"
        f" uses) p50 {bolt['execute_query_p50']:.1f} ms, session.execute_write p50"
        f" {bolt['session_p50']:.1f} ms\n\n"
        f"mean embed() call: raw {b['raw_mean']:.1f} ms ({b['raw_calls']} calls), inside the "
        f"pipeline {b['pipeline_mean']:.1f} ms ({b['pipeline_calls']} calls)"
    )
    return "\n\n".join([main, per_rep, breakdown, batch])


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.ingest_throughput", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--docs", type=int, default=20, help="documents per pass")
    parser.add_argument("--chunks-per-doc", type=int, default=100, help="target chunks per doc")
    parser.add_argument(
        "--entity-rate",
        type=float,
        default=0.0,
        help="share of sentences naming a person/place (a third as many mention a code "
        "identifier). Default 0: the embedded FalkorDB 4.16 crashes on a Bolt message over "
        "about 4 KB, and a document's mention list passes that at about 35 mentions (about "
        "10 chunks at 0.25); see bench/README.md",
    )
    parser.add_argument(
        "--batch-size", type=int, default=None, help="embedding batch size (default: pipeline.yaml)"
    )
    parser.add_argument(
        "--pdf-pages",
        type=int,
        default=0,
        help="instead of --docs text files: one generated PDF of this many pages per pass",
    )
    parser.add_argument("--words-per-page", type=int, default=450, help="with --pdf-pages")
    parser.add_argument("--repeats", type=int, default=2, help="raw/pipeline pairs, in ABBA order")
    parser.add_argument("--timeout", type=float, default=900.0, help="per pass, seconds")
    add_common_arguments(parser)
    args = parser.parse_args(argv)
    if args.docs < 1 or args.chunks_per_doc < 1 or args.repeats < 1:
        parser.error("--docs, --chunks-per-doc and --repeats must be positive")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    json_path = args.json.resolve() if args.json else None
    isolate_environment()
    info = machine_info()
    print(f"machine: {info}")
    started = time.perf_counter()
    cfg = load_pipeline_config(None)
    if args.batch_size is not None:
        embedding = cfg.embedding.model_copy(update={"batch_size": args.batch_size})
        cfg = cfg.model_copy(update={"embedding": embedding})
    vocab = Vocabulary.load()  # loads the embedding model in this process, before any timing
    if args.pdf_pages:
        docs = [
            make_pdf_manual(
                vocab, args.pdf_pages, args.words_per_page, cfg, args.seed, args.entity_rate
            )
        ]
    else:
        docs = make_corpus(vocab, args.docs, args.chunks_per_doc, cfg, args.seed, args.entity_rate)
    counts = [len(d.chunks) for d in docs]
    print(
        f"corpus: {len(docs)} documents ({sum(d.filename.endswith('.md') for d in docs)} md),"
        f" {sum(counts)} chunks ({min(counts)}-{max(counts)} per document),"
        f" {sum(len(d.data) for d in docs) / 1e6:.1f} MB; chunking {cfg.chunking.strategy}"
        f" {cfg.chunking.chunk_size}/{cfg.chunking.chunk_overlap},"
        f" batch size {cfg.embedding.batch_size}, model {cfg.embedding.model}"
    )
    with bench_root(args.keep) as root:
        pipeline_file = root / "pipeline.yaml"
        pipeline_file.write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
        with engines(root, {"AGENTBUS_PIPELINE_CONFIG": str(pipeline_file)}) as plat:
            results = asyncio.run(measure(plat, docs, cfg, args))
    results.update(
        {
            "machine": {**info, "load_average_at_end": round(os.getloadavg()[0], 2)},
            "command": " ".join(["python -m bench.ingest_throughput", *(argv or sys.argv[1:])]),
            "service_mode": args.service,
            "corpus": {
                "documents": len(docs),
                "chunks": sum(counts),
                "bytes": sum(len(d.data) for d in docs),
                "chunking": cfg.chunking.model_dump(),
                "batch_size": cfg.embedding.batch_size,
                "model": cfg.embedding.model,
                "entity_rate": args.entity_rate,
            },
            "wall_s": time.perf_counter() - started,
        }
    )
    print()
    print(report(results))
    print(f"\ntotal {results['wall_s']:.0f}s")
    write_json(json_path, results)


if __name__ == "__main__":
    main()
