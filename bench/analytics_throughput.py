"""Analytics: events/s into ClickHouse (chDB) through the bus vs. direct batched inserts, and
DORA / usage query latency over one million events.

1. Direct baseline: `clickhouse_connect` inserts of prebuilt rows into the service's own schema
   (same migrations, same ReplacingMergeTree tables) in batches of `--batch`, in this process,
   into its own chDB directory. Only the insert is timed.
2. Through the bus: `--events` DomainEvents (deployments, commits, incidents) are published to
   JetStream first, then the real analytics service starts (its own process, as `agentbus up`
   runs it, with the same batch size) and drains the `analytics-events` consumer: decode and
   validate each message, check its subject, build the row, batch, insert, ack, record the insert
   span. Rate = events / (first delivery -> consumer drained: nothing pending, nothing unacked),
   from the consumer info polled every 50 ms. The stored count is checked afterwards.
   ratio = bus events/s / direct events/s.
3. Queries over one million events: with the service stopped, this process tops the service's
   chDB directory up to `--million` domain events and as many LlmUsage rows (direct inserts),
   waits until the background merges have settled (the DORA tables are merged once their parts
   are 10 s old, see the analytics migrations; the wait is printed, `--no-settle` skips it), then
   times each named query `--repeats` times, sequentially: in this process on the same store
   (the query code alone) and through the bus (`agentbus.v1.analytics.query` request/reply to the
   restarted service), p50/p90/p99.

Run: `.venv/bin/python -m bench.analytics_throughput [--events 100000] [--million 1000000]`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python bench/analytics_throughput.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import nats
from nats.aio.client import Client as NatsClient

from agentbus.analytics.migrations import migrate
from agentbus.analytics.queries import Queries
from agentbus.analytics.rows import COLUMNS, event_row
from agentbus.analytics.store import ClickHouseStore
from agentbus.contracts import AnalyticsQuery, AnalyticsResult, DomainEvent
from agentbus.contracts import subjects as s
from agentbus.contracts.streams import ANALYTICS_DOMAIN_EVENTS
from agentbus.runtime.engines import NatsEngine
from agentbus.runtime.provisioning import provision
from bench.common import (
    bench_root,
    foreign_load,
    isolate_environment,
    machine_info,
    markdown_table,
    summarize,
    write_json,
)

TENANT = "bench"
SERVICES = [f"svc{i:02d}" for i in range(20)]
START = datetime(2026, 8, 1, tzinfo=UTC)
SPAN_S = 90 * 86400


def domain_events(n: int, seed: int) -> list[DomainEvent]:
    """A realistic mix: 60% commits, 25% deployments (3 commits each, 10% failed), 15% incidents
    (open, then resolve), over 90 days and 20 services."""
    rng = random.Random(seed)
    out: list[DomainEvent] = []
    shas: list[str] = []
    for i in range(n):
        svc = SERVICES[i % len(SERVICES)]
        ts = START + timedelta(seconds=rng.randrange(SPAN_S))
        roll = rng.random()
        if roll < 0.6 or len(shas) < 3:
            sha = f"{seed:x}{i:010x}"
            shas.append(sha)
            data: dict[str, Any] = {"sha": sha, "service": svc}
            out.append(DomainEvent(tenant_id=TENANT, source="git", type="commit", ts=ts, data=data))
        elif roll < 0.85:
            data = {"service": svc, "commits": shas[-3:]}
            if rng.random() < 0.1:
                data["status"] = "failed"
            out.append(
                DomainEvent(tenant_id=TENANT, source="ci", type="deployment", ts=ts, data=data)
            )
        else:
            status = "open" if rng.random() < 0.5 else "resolved"
            data = {"service": svc, "incident_id": f"inc{i // 2}", "status": status}
            out.append(
                DomainEvent(tenant_id=TENANT, source="pager", type="incident", ts=ts, data=data)
            )
    return out


def usage_rows(n: int, seed: int) -> list[tuple[Any, ...]]:
    rng = random.Random(seed)
    models = ["gpt-4o-mini", "claude-haiku", "local/extractive", "gpt-4o"]
    rows = []
    for i in range(n):
        model = models[i % len(models)]
        tin, tout = rng.randrange(50, 4000), rng.randrange(5, 800)
        rows.append(
            (
                TENANT,
                f"u{seed}-{i}",
                START + timedelta(seconds=rng.randrange(SPAN_S)),
                f"run{i // 4}",
                f"th{i // 40}",
                f"assistant{i % 5}",
                "chat",
                model,
                model.split("/")[0],
                tin,
                tout,
                0,
                (tin * 0.15 + tout * 0.6) / 1e6,
                rng.uniform(100, 3000),
                rng.uniform(50, 600),
                True,
                rng.random() > 0.01,
                "",
            )
        )
    return rows


def open_store(path: Path) -> ClickHouseStore:
    store = ClickHouseStore(f"chdb://{path}")
    store.open()
    migrate(store)
    return store


def direct_inserts(path: Path, rows: list[tuple[Any, ...]], batch: int) -> float:
    """Events/s of batched inserts of prebuilt rows (the insert only)."""
    store = open_store(path)
    try:
        store.insert("events", rows[:batch], COLUMNS["events"])  # warm-up, not timed
        started = time.perf_counter()
        for i in range(batch, len(rows), batch):
            store.insert("events", rows[i : i + batch], COLUMNS["events"])
        elapsed = time.perf_counter() - started
        return (len(rows) - batch) / elapsed
    finally:
        store.close()


def start_service(root: Path, nats_url: str, batch: int) -> subprocess.Popen[bytes]:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("AGENTBUS_", "OTEL_"))},
        "AGENTBUS_NATS_URL": nats_url,
        "AGENTBUS_DATA_DIR": str(root / "var"),
        "AGENTBUS_ANALYTICS_BATCH_SIZE": str(batch),
    }
    log = (root / "analytics.log").open("ab")
    return subprocess.Popen(
        [sys.executable, "-m", "agentbus.analytics"], env=env, stdout=log, stderr=log, cwd=root
    )


async def wait_ready(nc: NatsClient, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"analytics exited with {proc.returncode}")
        try:
            await nc.request(s.health("analytics"), b"", timeout=1)
            return
        except (nats.errors.TimeoutError, nats.errors.NoRespondersError):
            await asyncio.sleep(0.1)
    raise TimeoutError("analytics did not start")


def stop_service(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


async def ask(nc: NatsClient, name: str, params: dict[str, Any]) -> AnalyticsResult:
    query = AnalyticsQuery(tenant_id=TENANT, name=name, params=params)  # type: ignore[arg-type]
    reply = await nc.request(s.ANALYTICS_QUERY, query.model_dump_json().encode(), timeout=120)
    result = AnalyticsResult.model_validate_json(reply.data)
    if result.error:
        raise RuntimeError(f"{name}: {result.error}")
    return result


async def through_the_bus(
    root: Path, nats_url: str, events: list[DomainEvent], batch: int
) -> dict[str, Any]:
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    await provision(js, "analytics")
    bodies = [
        (s.domain_event(e.tenant_id, e.source, e.type), e.model_dump_json().encode())
        for e in events
    ]
    started = time.perf_counter()
    for i in range(0, len(bodies), 500):
        await asyncio.gather(*(js.publish(subj, body) for subj, body in bodies[i : i + 500]))
    publish_s = time.perf_counter() - started
    print(f"published {len(bodies):,} events in {publish_s:.1f}s")
    spec = ANALYTICS_DOMAIN_EVENTS
    proc = start_service(root, nats_url, batch)
    first = end = 0.0
    try:
        with foreign_load() as load:
            while True:
                info = await js.consumer_info(spec.stream, spec.durable)
                now = time.perf_counter()
                if not first and (info.num_pending or 0) < len(events):
                    first = now
                if first and not info.num_pending and not info.num_ack_pending:
                    end = now
                    break
                if proc.poll() is not None:
                    raise RuntimeError("analytics exited during the run")
                await asyncio.sleep(0.05)
        await wait_ready(nc, proc)
        deps = sum(1 for e in events if e.type == "deployment")
        result = await ask(nc, "dora", {"since": "2026-07-01T00:00:00Z", "until": "2026-12-01"})
        stored = next(r for r in result.rows if r[0] == "*")[2]
        if stored != deps:
            raise RuntimeError(f"stored {stored} deployments, published {deps}")
    finally:
        stop_service(proc)
        await nc.close()
    return {
        "events": len(events),
        "publish_events_per_s": len(events) / publish_s,
        "drain_s": end - first,
        "events_per_s": len(events) / (end - first),
        "other_cpu_share": load.share,
    }


def label(name: str, params: dict[str, Any]) -> str:
    detail = params.get("group_by") or params.get("series") or params.get("service") or "all"
    return f"{name} {detail}"


QUERIES: list[tuple[str, dict[str, Any]]] = [
    ("dora", {"since": "2026-08-01T00:00:00Z", "until": "2026-10-30T00:00:00Z"}),
    (
        "dora",
        {"since": "2026-10-01T00:00:00Z", "until": "2026-10-30T00:00:00Z", "service": "svc03"},
    ),
    ("usage", {"group_by": "model", "since": "2026-08-01T00:00:00Z", "until": "2026-10-30"}),
    ("usage", {"group_by": "day", "since": "2026-08-01T00:00:00Z", "until": "2026-10-30"}),
    ("anomalies", {"series": "usage.tokens", "since": "2026-09-01", "until": "2026-10-30"}),
]


def settle_merges(store: ClickHouseStore, limit_s: float = 90.0) -> float:
    """Seconds until no merge runs and no DORA table partition has more than one part."""
    started = time.monotonic()
    while time.monotonic() - started < limit_s:
        running = store.query_sync("SELECT count() FROM system.merges")[0][0]
        parts = store.query_sync(
            """
            SELECT count() FROM (
                SELECT table, partition FROM system.parts
                WHERE active AND database = currentDatabase() AND startsWith(table, 'dora_')
                GROUP BY table, partition HAVING count() > 1
            )
            """
        )[0][0]
        if not running and not parts:
            break
        time.sleep(0.5)
    return time.monotonic() - started


async def query_latency(
    root: Path,
    nats_url: str,
    million: int,
    batch: int,
    repeats: int,
    seed: int,
    settle: bool = True,
) -> list[dict[str, Any]]:
    path = root / "var" / "clickhouse"
    store = open_store(path)
    have = store.query_sync("SELECT count() FROM events FINAL")[0][0]
    print(f"topping up {have:,} -> {million:,} events and {million:,} usage rows")
    started = time.perf_counter()
    step = 100_000
    for lo in range(int(have), million, step):
        rows = [event_row(e, START) for e in domain_events(min(step, million - lo), seed + lo)]
        for i in range(0, len(rows), 50_000):
            store.insert("events", rows[i : i + 50_000], COLUMNS["events"])
    for lo in range(0, million, step):
        store.insert(
            "llm_usage", usage_rows(min(step, million - lo), seed + lo), COLUMNS["llm_usage"]
        )
    print(f"loaded in {time.perf_counter() - started:.0f}s")
    if settle:
        print(f"merges settled after {settle_merges(store):.0f}s")
    queries = Queries(store)
    results: dict[str, dict[str, Any]] = {}
    try:
        for name, params in QUERIES:
            key = label(name, params)
            query = AnalyticsQuery(tenant_id=TENANT, name=name, params=params)  # type: ignore[arg-type]
            await queries.run(query)  # warm-up
            times = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                await queries.run(query)
                times.append(time.perf_counter() - t0)
            results[key] = {"query": key, "direct": summarize(times)}
    finally:
        store.close()
    proc = start_service(root, nats_url, batch)
    nc = await nats.connect(nats_url)
    try:
        await wait_ready(nc, proc)
        for name, params in QUERIES:
            key = label(name, params)
            result = await ask(nc, name, params)  # warm-up
            times = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                await ask(nc, name, params)
                times.append(time.perf_counter() - t0)
            results[key]["bus"] = summarize(times)
            results[key]["rows"] = len(result.rows)
    finally:
        await nc.close()
        stop_service(proc)
    return list(results.values())


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000, help="events through the bus")
    parser.add_argument("--batch", type=int, default=2000, help="rows per insert (both paths)")
    parser.add_argument("--million", type=int, default=1_000_000, help="events for the queries")
    parser.add_argument("--repeats", type=int, default=10, help="timed runs of each query")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--keep", action="store_true")
    parser.add_argument(
        "--no-settle", action="store_true", help="time the queries right after the top-up"
    )
    args = parser.parse_args()
    isolate_environment()
    info = machine_info()
    print(info)
    events = domain_events(args.events, args.seed)
    rows = [event_row(e, START) for e in events]
    with bench_root(args.keep) as root, NatsEngine(root / "nats") as engine:
        direct = direct_inserts(root / "direct", rows, args.batch)
        print(f"direct batched inserts: {direct:,.0f} events/s")
        bus = await through_the_bus(root, engine.url, events, args.batch)
        print(f"through the bus: {bus['events_per_s']:,.0f} events/s ({bus})")
        latency = await query_latency(
            root,
            engine.url,
            args.million,
            args.batch,
            args.repeats,
            args.seed,
            settle=not args.no_settle,
        )
    print()
    print(
        markdown_table(
            ["path", "events", "events/s", "ratio"],
            [
                [
                    "direct batched inserts (clickhouse_connect)",
                    len(rows) - args.batch,
                    direct,
                    1.0,
                ],
                [
                    "through the bus (analytics service)",
                    bus["events"],
                    bus["events_per_s"],
                    bus["events_per_s"] / direct,
                ],
            ],
        )
    )
    print()
    print(
        markdown_table(
            [
                "query",
                "rows",
                "direct p50 ms",
                "direct p99 ms",
                "bus p50 ms",
                "bus p90 ms",
                "bus p99 ms",
            ],
            [
                [
                    r["query"],
                    r["rows"],
                    r["direct"]["p50_ms"],
                    r["direct"]["p99_ms"],
                    r["bus"]["p50_ms"],
                    r["bus"]["p90_ms"],
                    r["bus"]["p99_ms"],
                ]
                for r in latency
            ],
        )
    )
    write_json(
        args.json,
        {
            "machine": info,
            "args": vars(args),
            "direct_events_per_s": direct,
            "bus": bus,
            "queries": latency,
        },
    )


if __name__ == "__main__":
    asyncio.run(main())
