"""A real manual through the real ingest path, with every engine watched the whole time.

Corpus: HTML pages of the PostgreSQL 15 manual as Debian ships it (`apt-get install
postgresql-doc-15`, /usr/share/doc/postgresql-doc-15/html), the first `--pages` in name order
with `app-pg-dumpall.html` first: that page's entity list, sent as one Bolt parameter, used to
abort the embedded FalkorDB (`*** stack smashing detected ***`, see
agentbus.runtime.stores.knowledge_graph). Not generated text: real headings, code, option tables,
quotes.

The engines and the ingest service (its own process, as `agentbus up` runs it) start on free
loopback ports with data in a temporary directory; pages go in through the bus exactly as an
external system sends them (`clients.ingest.submit`, then `follow` until the outcome). Every
0.5 s the script checks that each engine process is still the one it started (same pid,
running); at the end it counts what the graph and the chunk table hold, and scans the graph
server's log for a crash report. The run fails (exit 1) when an engine died or was restarted,
a page failed, or the graph lacks a page's document node or any indexed chunk.

Run: `.venv/bin/python -m bench.real_corpus [--pages 300] [--json out.json] [--keep]`.
It is a verification, not a speed benchmark; the time it reports is for orientation.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python bench/real_corpus.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import asyncpg
import nats
from nats.aio.client import Client as NatsClient

from agentbus.contracts import DocumentIndexed, IngestFailed
from agentbus.runtime.clients.ingest import follow, submit
from agentbus.runtime.platform import Platform
from agentbus.runtime.stores.knowledge_graph import async_driver, inline_parameters
from bench.common import bench_root, engines, isolate_environment, machine_info, service

MANUAL = Path("/usr/share/doc/postgresql-doc-15/html")
FIRST = "app-pg-dumpall.html"
TENANT = "real-corpus"
CRASH_MARKS = ("stack smashing", "crashed by signal", "REDIS BUG REPORT")


@dataclass
class Outcome:
    page: str
    bytes: int
    chunks: int = 0
    failed: str = ""


@dataclass
class Report:
    machine: dict[str, Any]
    pages: int
    bytes: int
    wall_s: float = 0.0
    indexed: int = 0
    failed: list[str] = field(default_factory=list)
    chunks: int = 0
    engine_checks: int = 0
    engines_alive_throughout: bool = True
    engine_problems: list[str] = field(default_factory=list)
    graph: dict[str, int] = field(default_factory=dict)
    chunk_rows: int = 0
    pages_missing_in_graph: list[str] = field(default_factory=list)
    documents_without_mentions: int = 0

    @property
    def ok(self) -> bool:
        return (
            self.engines_alive_throughout
            and not self.failed
            and not self.pages_missing_in_graph
            and self.indexed == self.pages
        )


def choose_pages(directory: Path, count: int) -> list[Path]:
    pages = sorted(p for p in directory.glob("*.html") if p.name != FIRST)
    first = directory / FIRST
    chosen = ([first] if first.exists() else []) + pages
    return chosen[:count]


class EngineWatch:
    """Samples the engines: each must keep the pid it started with (a restart would hide a
    crash) and stay running."""

    def __init__(self, plat: Platform) -> None:
        self.plat = plat
        self.engines = [plat.engines.nats, plat.engines.postgres, plat.engines.graph]
        self.pids = {e.name: e.pids() for e in self.engines}
        self.checks = 0
        self.problems: list[str] = []

    def check(self) -> None:
        self.checks += 1
        for engine in self.engines:
            if not engine.is_running():
                self._problem(f"{engine.name} is not running: {engine.last_log_line()}")
            elif engine.pids() != self.pids[engine.name]:
                self._problem(f"{engine.name} was restarted ({self.pids[engine.name]} -> "
                              f"{engine.pids()})")  # fmt: skip

    def _problem(self, text: str) -> None:
        if text not in self.problems:
            self.problems.append(text)
            print(f"ENGINE PROBLEM: {text}", flush=True)

    async def run(self) -> None:
        """Returns at the first problem: waiting out the worker's retries would tell no more."""
        while not self.problems:
            self.check()
            await asyncio.sleep(0.5)

    def crash_lines(self) -> list[str]:
        """The first log line of each kind of crash report (a crash repeats them by the 1000)."""
        log = self.plat.engines.graph.log_path.read_text(errors="replace").splitlines()
        return [
            f"graph log: {line.strip()}"
            for mark in CRASH_MARKS
            for line in [next((x for x in log if mark in x), "")]
            if line
        ]


async def _ingest(nc: NatsClient, page: Path, timeout: float) -> Outcome:
    data = await asyncio.to_thread(page.read_bytes)
    out = Outcome(page.name, len(data))
    sub = await submit(nc, TENANT, data, filename=page.name, source=f"manual/{page.name}")
    async for event in follow(nc, sub.document_id, sha256=sub.sha256, timeout=timeout):
        if isinstance(event, DocumentIndexed):
            out.chunks = event.chunks
        elif isinstance(event, IngestFailed):
            out.failed = f"{event.stage}: {event.reason}"
    return out


async def _graph_counts(plat: Platform, report: Report, pages: list[Path]) -> None:
    driver = async_driver(plat.engines.graph.url)
    try:

        async def one(query: str, **params: Any) -> list[dict[str, Any]]:
            records, _, _ = await driver.execute_query(inline_parameters(query, params))
            return [r.data() for r in records]

        counts = await one(
            """
            MATCH (d:Document {tenant_id: $t})
            OPTIONAL MATCH (d)-[:HAS_CHUNK]->(c:Chunk)
            RETURN count(DISTINCT d) AS documents, count(DISTINCT c) AS chunks
            """,
            t=TENANT,
        )
        entities = await one(
            "MATCH (e:Entity {tenant_id: $t}) RETURN count(e) AS entities", t=TENANT
        )
        mentions = await one(
            "MATCH (:Chunk {tenant_id: $t})-[m:MENTIONS]->() RETURN count(m) AS mentions",
            t=TENANT,
        )
        related = await one(
            "MATCH (:Entity {tenant_id: $t})-[r:RELATED]->() RETURN count(r) AS related", t=TENANT
        )
        report.graph = {**counts[0], **entities[0], **mentions[0], **related[0]}
        # Every page has its document node, holding all its chunks.
        per_doc = await one(
            """
            MATCH (d:Document {tenant_id: $t})-[:HAS_CHUNK]->(c:Chunk)
            OPTIONAL MATCH (c)-[m:MENTIONS]->()
            RETURN d.title AS title, count(DISTINCT c) AS chunks, count(m) AS mentions
            """,
            t=TENANT,
        )
        report.documents_without_mentions = sum(1 for row in per_doc if row["mentions"] == 0)
        if report.graph["documents"] != len(pages):
            report.pages_missing_in_graph.append(
                f"{len(pages) - report.graph['documents']} of {len(pages)} document nodes missing"
            )
        if report.graph["chunks"] != report.chunks:
            report.pages_missing_in_graph.append(
                f"the graph holds {report.graph['chunks']} chunks, ingest indexed {report.chunks}"
            )
    finally:
        await driver.close()


async def main(args: argparse.Namespace) -> int:
    isolate_environment()
    pages = choose_pages(args.manual, args.pages)
    if not pages:
        print(
            f"no HTML pages in {args.manual}: apt-get update && apt-get install -y "
            "postgresql-doc-15 (or pass --manual DIR)",
            file=sys.stderr,
        )
        return 2
    report = Report(machine_info(), len(pages), sum(p.stat().st_size for p in pages))
    print(f"{len(pages)} pages, {report.bytes / 1e6:.1f} MB, first {pages[0].name}", flush=True)
    with bench_root(args.keep) as root, engines(root) as plat:
        async with service(plat, "ingest", "process"):
            watch = EngineWatch(plat)
            watcher = asyncio.create_task(watch.run())
            nc = await nats.connect(plat.engines.nats.url)
            try:
                started = time.perf_counter()
                # A bounded number in flight: submissions are cheap, the service takes them
                # one after another anyway; this keeps `follow` subscriptions few.
                gate = asyncio.Semaphore(args.in_flight)
                done = 0

                async def ingest(page: Path) -> Outcome:
                    nonlocal done
                    async with gate:
                        outcome = await _ingest(nc, page, args.timeout)
                    done += 1
                    if done % 25 == 0 or outcome.failed:
                        print(
                            f"  {done}/{len(pages)} {time.perf_counter() - started:.0f}s"
                            f" {outcome.page} {outcome.failed or 'ok'}",
                            flush=True,
                        )
                    return outcome

                everything = asyncio.gather(*(ingest(p) for p in pages))
                racing: set[asyncio.Future[Any]] = {watcher, everything}
                await asyncio.wait(racing, return_when=asyncio.FIRST_COMPLETED)
                report.wall_s = round(time.perf_counter() - started, 1)
                if everything.done():
                    outcomes = everything.result()
                else:  # an engine died: the pages still waiting count as failed
                    everything.cancel()
                    await asyncio.gather(everything, return_exceptions=True)
                    outcomes = [Outcome(p.name, 0, failed="not finished") for p in pages]
            finally:
                watcher.cancel()
                await nc.close()
            watch.check()
            report.engine_checks = watch.checks
            report.engine_problems = watch.problems + watch.crash_lines()
            report.engines_alive_throughout = not report.engine_problems
            report.indexed = sum(1 for o in outcomes if not o.failed)
            report.failed = [f"{o.page}: {o.failed}" for o in outcomes if o.failed]
            report.chunks = sum(o.chunks for o in outcomes)
            if watch.plat.engines.graph.is_running():
                await _graph_counts(plat, report, pages)
            conn = await asyncpg.connect(plat.engines.postgres.url)
            try:
                report.chunk_rows = await conn.fetchval(
                    "SELECT count(*) FROM chunks WHERE tenant_id = $1", TENANT
                )
            finally:
                await conn.close()
    _print(report)
    if args.json:
        args.json.write_text(json.dumps({**asdict(report), "ok": report.ok}, indent=2))
    return 0 if report.ok else 1


def _print(report: Report) -> None:
    print()
    print("| pages | MB | wall s | indexed | failed | chunks | engines alive (checks) |")
    print("|---|---|---|---|---|---|---|")
    alive = "yes" if report.engines_alive_throughout else "NO"
    print(
        f"| {report.pages} | {report.bytes / 1e6:.1f} | {report.wall_s} | {report.indexed} |"
        f" {len(report.failed)} | {report.chunks} | {alive} ({report.engine_checks}) |"
    )
    print(f"graph: {report.graph}; chunk rows in PostgreSQL: {report.chunk_rows}")
    print(f"documents whose chunks mention no entity: {report.documents_without_mentions}")
    for line in report.failed + report.engine_problems + report.pages_missing_in_graph:
        print(f"  problem: {line}")
    print("OK" if report.ok else "NOT OK")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=300, help="how many pages (default 300)")
    parser.add_argument("--manual", type=Path, default=MANUAL, help="directory of HTML pages")
    parser.add_argument("--in-flight", type=int, default=32, help="pages submitted at once")
    parser.add_argument("--timeout", type=float, default=900.0, help="per page, seconds")
    parser.add_argument("--json", type=Path, help="write the report here")
    parser.add_argument("--keep", action="store_true", help="keep engine data and logs")
    return parser.parse_args(argv)


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse_args())))
