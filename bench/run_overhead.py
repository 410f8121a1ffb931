"""Run overhead of the orchestrator with an instant model, vs. the same graph in-process.

Bus path: the real orchestrator service (its own process by default, as `agentbus up` starts
it; or in this process with `--service inprocess`) runs the `echo` assistant — one node that
streams the user's message back as one `token` event per word, i.e. an instant model. The
client publishes `RunRequested` to JetStream (`agentbus.v1.runs.submit`, `Nats-Msg-Id` =
run_id, as `services/orchestrator/tests/test_runs.py` does) and reads every run's events through
ONE core NATS subscription on `agentbus.v1.runs.events.>`, opened before the first publish; each
event is timestamped in its callback. TTFT = first `token` event - just before the publish;
end = the `end` event - just before the publish.

Baseline, in the same run against the same PostgreSQL: the same compiled echo graph
(`BUILDERS["echo"]`) with the same checkpointer (`AsyncPostgresSaver` over a psycopg
`AsyncConnectionPool` with the orchestrator's connection settings), driven with
`graph.astream(input, config, context=ctx, stream_mode=["updates", "values"])` where `ctx` is a
`RunContext` whose `publish` is a no-op coroutine that decodes and timestamps each event. The
baseline emits the same event sequence as the runner (`metadata`, the node's `node_start`,
tokens and `node_end`, a `values` event per chunk, `end`), so both paths serialise the same
events; what it leaves out is everything the orchestrator adds: JetStream transport and storage
of the request and of every event (each publish awaits its ack), the pull consumer, the
`last_event` look-up, `aget_state` for the end event, heartbeats, RunFinished telemetry.

Both paths keep `concurrency` runs in flight (asyncio.gather over a semaphore), each run on a new
thread; warm-up runs at the same concurrency come first and are not counted. The two paths are
measured in interleaved segments (A B B A) and the baseline is re-measured next to each
orchestrator setting, so load from elsewhere on the machine hits both alike; that load is
reported (`other load`: CPU time of processes outside this benchmark, as a share of all cores).
Added ms = bus - baseline. The orchestrator runs with each `--max-concurrent-runs` value (default
8, the service default, and 64), restarted in between. CPU ms per run of each process (client,
orchestrator, nats-server, PostgreSQL) are reported too: less sensitive to a busy machine than
wall times.

Run: `.venv/bin/python -m bench.run_overhead [--concurrency 1,32,256] [--runs 200,640,1280]
[--max-concurrent-runs 8,64] [--service process] [--json out.json]`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

if __package__ in (None, ""):  # `python bench/run_overhead.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import nats
import psutil
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from agentbus.contracts import RunEvent, RunRequested, new_id
from agentbus.contracts import subjects as s
from agentbus.contracts.streams import RUN_EVENTS
from agentbus.orchestrator.assistants import BUILDERS
from agentbus.orchestrator.context import RunContext
from agentbus.orchestrator.runner import thread_key, to_json
from agentbus.orchestrator.tools import ToolBox
from agentbus.runtime.platform import Platform
from bench.common import (
    bench_root,
    engines,
    isolate_environment,
    machine_info,
    markdown_table,
    positive_ints,
    service,
    summarize,
    write_json,
)

ASSISTANT = "echo"
TENANT = "bench"
EVENTS_PREFIX = s.run_events("x")[:-1]  # "agentbus.v1.runs.events."
# DESIGN §8, quoted (measured once on this machine type, not in this run): the LangGraph dev
# server (langgraph-api 0.16.7) with the official langgraph_sdk client, one-node graph, instant
# fake model.
QUOTED_LANGGRAPH_DEV = {
    1: {"runs_s": 1.0, "ttft_p50_ms": 977.0},
    32: {"runs_s": 20.9, "ttft_p50_ms": 1032.0},
}
TARGET_TTFT_P50_MS = 50.0
TARGET_RUNS_RATIO = 5.0
TARGET_ADDED_TTFT_P50_MS = 5.0


# -- one run's timing ------------------------------------------------------------------------


@dataclass
class RunTiming:
    t0: float = 0.0
    first_token: float | None = None
    end: float | None = None
    events: int = 0
    status: str | None = None

    def seen(self, now: float, kind: str, status: str | None) -> bool:
        """Record one event; True when it is the run's `end`."""
        self.events += 1
        if kind == "token":
            if self.first_token is None:
                self.first_token = now
        elif kind == "end":
            self.end = now
            self.status = status
            return True
        return False


def decode(data: bytes) -> tuple[str, str | None]:
    """(type, status) of a serialised RunEvent; both paths pay this same cost per event."""
    event = json.loads(data)
    return str(event["type"]), event.get("status")


@dataclass
class PassResult:
    """One path at one concurrency: the union of its interleaved segments."""

    path: str
    concurrency: int
    max_concurrent_runs: int | None
    runs: int = 0
    wall_s: float = 0.0
    timings: list[RunTiming] = field(default_factory=list)
    errors: int = 0
    cpu_s: dict[str, float] = field(default_factory=dict)

    def add(
        self, runs: int, timings: list[RunTiming], errors: int, wall: float, cpu: dict[str, float]
    ) -> None:
        self.runs += runs
        self.timings += timings
        self.errors += errors
        self.wall_s += wall
        for key, value in cpu.items():
            self.cpu_s[key] = self.cpu_s.get(key, 0.0) + value

    def report(self) -> dict[str, Any]:
        ok = [t for t in self.timings if t.end is not None and t.status == "success"]
        events = sum(t.events for t in self.timings)
        ttft = [t.first_token - t.t0 for t in ok if t.first_token is not None]
        end = [cast(float, t.end) - t.t0 for t in ok]
        cores = os.cpu_count() or 1
        ours = {k: v for k, v in self.cpu_s.items() if k not in ("machine", "other")}
        return {
            "path": self.path,
            "max_concurrent_runs": self.max_concurrent_runs,
            "concurrency": self.concurrency,
            "runs": self.runs,
            "ok": len(ok),
            "errors": self.errors + len(self.timings) - len(ok),
            "wall_s": self.wall_s,
            "runs_s": len(ok) / self.wall_s if self.wall_s > 0 else 0.0,
            "events": events,
            "events_per_run": events / len(self.timings) if self.timings else 0.0,
            "events_s": events / self.wall_s if self.wall_s > 0 else 0.0,
            "ttft": summarize(ttft),
            "end": summarize(end),
            "cpu_ms_per_run": {k: v * 1e3 / max(1, len(ok)) for k, v in ours.items()},
            # Share of all cores: ours (the measured processes) and everything else running on
            # the machine meanwhile (other sessions, other benchmarks): the noise floor.
            "cpu_busy_pct": {
                "ours": 100 * sum(ours.values()) / (self.wall_s * cores) if self.wall_s else 0.0,
                "other": 100 * self.cpu_s.get("other", 0.0) / (self.wall_s * cores)
                if self.wall_s
                else 0.0,
            },
        }


async def in_flight(
    one: Callable[[int], Awaitable[RunTiming | None]], runs: int, concurrency: int
) -> tuple[list[RunTiming], int, float]:
    """`runs` calls with at most `concurrency` in flight; (timings, errors, wall seconds)."""
    gate = asyncio.Semaphore(concurrency)
    timings: list[RunTiming] = []
    errors = 0

    async def guarded(i: int) -> None:
        nonlocal errors
        async with gate:
            try:
                timing = await one(i)
            except Exception as exc:  # counted, never timed
                errors += 1
                if errors <= 3:
                    print(f"  run failed: {type(exc).__name__}: {exc}")
                return
            if timing is None:
                errors += 1
            else:
                timings.append(timing)

    started = time.perf_counter()
    await asyncio.gather(*(guarded(i) for i in range(runs)))
    return timings, errors, time.perf_counter() - started


def message(words: int) -> dict[str, Any]:
    text = " ".join(f"word{i}" for i in range(words))
    return {"messages": [{"role": "user", "content": text}]}


def new_run(words: int) -> RunRequested:
    return RunRequested(
        tenant_id=TENANT,
        run_id=new_id(),
        thread_id=new_id(),
        assistant_id=ASSISTANT,
        input=message(words),
    )


# -- CPU accounting --------------------------------------------------------------------------


class CpuMeter:
    """CPU seconds (user + system) of named process trees between start() and stop(), and
    `other`: the machine's busy CPU time not spent in them."""

    def __init__(self, roots: dict[str, int]) -> None:
        self.roots = roots
        self.before: dict[str, float] = {}

    def _sample(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for name, pid in self.roots.items():
            total = 0.0
            with contextlib.suppress(psutil.Error):
                root = psutil.Process(pid)
                # This process starts the engines and the orchestrator: count only itself.
                tree = [] if pid == os.getpid() else root.children(recursive=True)
                for proc in [root, *tree]:
                    with contextlib.suppress(psutil.Error):
                        cpu = proc.cpu_times()
                        total += cpu.user + cpu.system
            out[name] = total
        machine = psutil.cpu_times()
        out["machine"] = sum(machine) - machine.idle - getattr(machine, "iowait", 0.0)
        return out

    def start(self) -> None:
        self.before = self._sample()

    def stop(self) -> dict[str, float]:
        after = self._sample()
        spent = {k: after[k] - self.before.get(k, 0.0) for k in after}
        ours = sum(v for k, v in spent.items() if k != "machine")
        spent["other"] = max(0.0, spent.pop("machine") - ours)
        return spent


def cpu_roots(plat: Platform, orchestrator_pid: int | None) -> dict[str, int]:
    roots = {"bench": os.getpid()}
    if orchestrator_pid is not None:
        roots["orchestrator"] = orchestrator_pid
    for engine in (plat.engines.nats, plat.engines.postgres, plat.engines.graph):
        pids = engine.pids()
        if pids:
            roots[engine.name] = pids[0]
    return roots


# -- baseline: the graph in-process ----------------------------------------------------------


class Baseline:
    """The echo graph with the orchestrator's checkpointer, events to a no-op publish."""

    def __init__(self, dsn: str, pool_size: int) -> None:
        self.pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
            dsn,
            kwargs={"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row},
            min_size=1,
            max_size=pool_size,
            open=False,
        )
        self.graph: Any = None

    async def __aenter__(self) -> Baseline:
        await self.pool.open(wait=True, timeout=10)
        saver = AsyncPostgresSaver(self.pool)
        await saver.setup()
        self.graph = BUILDERS[ASSISTANT](saver)
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.pool.close()

    async def run_once(self, words: int) -> RunTiming:
        run = new_run(words)
        timing = RunTiming()

        async def publish(subject: str, data: bytes, headers: dict[str, str]) -> None:
            now = time.perf_counter()
            timing.seen(now, *decode(data))

        config: dict[str, Any] = {
            "configurable": {"thread_id": thread_key(run.tenant_id, run.thread_id)},
            "metadata": {"run_id": run.run_id, "assistant_id": run.assistant_id},
            "recursion_limit": 50,
        }
        timing.t0 = time.perf_counter()
        ctx = RunContext(run=run, publish=publish, router=None, tools=cast(ToolBox, None))
        await ctx.emit(
            "metadata",
            {"run_id": run.run_id, "thread_id": run.thread_id, "assistant_id": ASSISTANT},
        )
        values: Any = {}
        async for mode, chunk in self.graph.astream(
            run.input, config, context=ctx, stream_mode=["updates", "values"]
        ):
            if mode == "values":
                values = to_json(chunk)
            if mode in run.stream_modes:
                await ctx.emit(mode, to_json(chunk))
        messages = values.get("messages") if isinstance(values, dict) else None
        answer = str(messages[-1].get("content") or "") if messages else ""
        await ctx.emit("end", {"answer": answer, "citations": []}, status="success")
        return timing


# -- bus path: RunRequested in, events out ---------------------------------------------------


class BusClient:
    """Submits runs to JetStream and times their events from one wildcard subscription."""

    def __init__(self, nc: NatsClient, timeout: float) -> None:
        self.nc = nc
        self.js = nc.jetstream()
        self.timeout = timeout
        self.pending: dict[str, tuple[RunTiming, asyncio.Future[None]]] = {}

    async def start(self) -> None:
        await self.nc.subscribe(
            s.RUN_EVENTS_ALL,
            cb=self._on_event,
            pending_msgs_limit=1_000_000,
            pending_bytes_limit=1 << 30,
        )
        await self.nc.flush()

    async def _on_event(self, msg: Msg) -> None:
        now = time.perf_counter()
        entry = self.pending.get(msg.subject[len(EVENTS_PREFIX) :])
        if entry is None:
            return
        timing, done = entry
        if timing.seen(now, *decode(msg.data)) and not done.done():
            done.set_result(None)

    async def run_once(self, words: int) -> RunTiming | None:
        run = new_run(words)
        body = run.model_dump_json().encode()
        timing = RunTiming()
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.pending[run.run_id] = (timing, done)
        try:
            timing.t0 = time.perf_counter()
            await self.js.publish(s.RUNS_SUBMIT, body, headers={"Nats-Msg-Id": run.run_id})
            await asyncio.wait_for(done, self.timeout)
        except TimeoutError:
            return None
        finally:
            self.pending.pop(run.run_id, None)
        return timing


async def bus_primitives(nc: NatsClient, n: int = 300) -> dict[str, Any]:
    """p50/p99 of the bus operations a run repeats, one at a time (no load): an acked JetStream
    publish of a RunEvent (the runner awaits one per event) and the `last_event` look-up."""
    js = nc.jetstream()
    run_id = new_id()
    subject = s.run_events(run_id)
    event = RunEvent(
        tenant_id=TENANT,
        run_id=run_id,
        thread_id=run_id,
        seq=0,
        type="token",
        node="echo",
        data={"text": "word "},
    )
    publish: list[float] = []
    for seq in range(n):
        body = event.model_copy(update={"seq": seq}).model_dump_json().encode()
        started = time.perf_counter()
        await js.publish(subject, body, headers={"Nats-Msg-Id": f"{run_id}:{seq}"})
        publish.append(time.perf_counter() - started)
    last: list[float] = []
    for _ in range(n):
        started = time.perf_counter()
        await js.get_last_msg(RUN_EVENTS.name, subject)
        last.append(time.perf_counter() - started)
    return {"js_publish": summarize(publish), "get_last_msg": summarize(last)}


# -- the orchestrator under test -------------------------------------------------------------


@contextlib.asynccontextmanager
async def orchestrator(plat: Platform, mode: str, max_runs: int) -> AsyncIterator[int | None]:
    """The orchestrator with AGENTBUS_MAX_CONCURRENT_RUNS=max_runs; yields its pid (process
    mode) or None (in this process)."""
    plat.extra_env["AGENTBUS_MAX_CONCURRENT_RUNS"] = str(max_runs)
    if mode == "process":
        async with service(plat, "orchestrator", "process"):
            yield plat.procs["orchestrator"].pid
        return
    from agentbus.orchestrator.app import build
    from agentbus.orchestrator.settings import OrchestratorSettings
    from agentbus.runtime.testing import running

    for key, value in plat.env().items():
        if key.startswith("AGENTBUS_"):
            os.environ[key] = value
    settings = OrchestratorSettings(_env_file=None)
    async with running(build(settings), timeout=120):
        yield None


# -- the benchmark ---------------------------------------------------------------------------


async def segment(
    result: PassResult,
    call: Callable[[int], Awaitable[RunTiming | None]],
    runs: int,
    meter: CpuMeter,
) -> None:
    meter.start()
    timings, errors, wall = await in_flight(call, runs, result.concurrency)
    result.add(runs, timings, errors, wall, meter.stop())


def progress(result: PassResult) -> None:
    r = result.report()
    label = "in-process" if result.path == "in-process" else "bus"
    print(
        f"  {label:<10} c={result.concurrency:<4} {r['ok']}/{r['runs']} ok in"
        f" {r['wall_s']:5.1f}s: {r['runs_s']:6.1f} runs/s {r['events_s']:7.0f} events/s,"
        f" TTFT p50 {r['ttft'].get('p50_ms', float('nan')):7.2f} ms,"
        f" end p50 {r['end'].get('p50_ms', float('nan')):7.2f} ms,"
        f" other load {r['cpu_busy_pct']['other']:.0f}% of the machine"
    )


async def measure(plat: Platform, args: argparse.Namespace) -> dict[str, Any]:
    """For each orchestrator setting, each concurrency: warm both paths up, then measure them
    in `rounds` interleaved segments (A B B A ...) so drift on the machine hits both alike."""
    nc = await nats.connect(plat.engines.nats.url)
    passes: list[PassResult] = []
    primitives: dict[str, Any] = {}
    try:
        bus = BusClient(nc, args.timeout)
        await bus.start()
        for round_, max_runs in enumerate(args.max_concurrent_runs):
            print(f"orchestrator ({args.service}), max_concurrent_runs={max_runs}")
            pool_size = args.baseline_pool or max_runs + 2
            async with (
                orchestrator(plat, args.service, max_runs) as pid,
                Baseline(plat.engines.postgres.url, pool_size) as baseline,
            ):
                meter = CpuMeter(cpu_roots(plat, pid))
                if round_ == 0:
                    primitives = await bus_primitives(nc)

                async def in_process(_i: int) -> RunTiming | None:
                    return await baseline.run_once(args.words)

                async def over_bus(_i: int) -> RunTiming | None:
                    return await bus.run_once(args.words)

                for concurrency, runs in zip(args.concurrency, args.runs, strict=True):
                    warmup = args.warmup if args.warmup is not None else max(20, concurrency)
                    pair = (
                        (PassResult("in-process", concurrency, max_runs), in_process),
                        (PassResult("bus", concurrency, max_runs), over_bus),
                    )
                    for _, call in pair:
                        if warmup:
                            await in_flight(call, warmup, concurrency)
                    sizes = [
                        runs // args.rounds + (i < runs % args.rounds) for i in range(args.rounds)
                    ]
                    for i, size in enumerate(sizes):
                        for result, call in pair if i % 2 == 0 else pair[::-1]:
                            await segment(result, call, size, meter)
                    for result, _ in pair:
                        progress(result)
                        passes.append(result)
    finally:
        await nc.close()
    return {"passes": [p.report() for p in passes], "bus_primitives": primitives}


# -- report ----------------------------------------------------------------------------------


def _p(stats: dict[str, float], key: str) -> float:
    return float(stats.get(key, float("nan")))


def comparison(res: dict[str, Any]) -> list[dict[str, Any]]:
    """Bus minus its paired in-process baseline, per (max_concurrent_runs, concurrency)."""
    base = {
        (p["max_concurrent_runs"], p["concurrency"]): p
        for p in res["passes"]
        if p["path"] == "in-process"
    }
    rows = []
    for p in res["passes"]:
        b = base.get((p["max_concurrent_runs"], p["concurrency"]))
        if p["path"] != "bus" or b is None:
            continue
        per_run = (
            1e3 / p["runs_s"] - 1e3 / b["runs_s"] if p["runs_s"] and b["runs_s"] else float("nan")
        )
        rows.append(
            {
                "max_concurrent_runs": p["max_concurrent_runs"],
                "concurrency": p["concurrency"],
                "added_ttft_p50_ms": _p(p["ttft"], "p50_ms") - _p(b["ttft"], "p50_ms"),
                "added_ttft_p99_ms": _p(p["ttft"], "p99_ms") - _p(b["ttft"], "p99_ms"),
                "added_end_p50_ms": _p(p["end"], "p50_ms") - _p(b["end"], "p50_ms"),
                "added_end_p99_ms": _p(p["end"], "p99_ms") - _p(b["end"], "p99_ms"),
                "added_end_mean_ms": _p(p["end"], "mean_ms") - _p(b["end"], "mean_ms"),
                "added_wall_ms_per_run": per_run,
                "runs_s_ratio": p["runs_s"] / b["runs_s"] if b["runs_s"] else float("nan"),
            }
        )
    return rows


def design_targets(res: dict[str, Any]) -> list[dict[str, Any]]:
    """Our bus numbers at the concurrencies DESIGN §8 quotes the LangGraph dev server at."""
    out = []
    for p in res["passes"]:
        quoted = QUOTED_LANGGRAPH_DEV.get(p["concurrency"])
        if p["path"] != "bus" or quoted is None:
            continue
        out.append(
            {
                "concurrency": p["concurrency"],
                "max_concurrent_runs": p["max_concurrent_runs"],
                "quoted_runs_s": quoted["runs_s"],
                "quoted_ttft_p50_ms": quoted["ttft_p50_ms"],
                "runs_s": p["runs_s"],
                "ttft_p50_ms": _p(p["ttft"], "p50_ms"),
                "ratio": p["runs_s"] / quoted["runs_s"],
            }
        )
    return out


def _label(p: dict[str, Any]) -> str:
    return "in-process astream" if p["path"] == "in-process" else "bus"


def report(res: dict[str, Any]) -> str:
    passes = res["passes"]
    main = markdown_table(
        [
            "max_concurrent_runs",
            "path",
            "c",
            "runs ok",
            "runs/s",
            "events/s",
            "TTFT p50 ms",
            "TTFT p99 ms",
            "end p50 ms",
            "end p99 ms",
            "other load",
        ],
        [
            [
                p["max_concurrent_runs"],
                _label(p),
                p["concurrency"],
                f"{p['ok']}/{p['runs']}",
                p["runs_s"],
                p["events_s"],
                _p(p["ttft"], "p50_ms"),
                _p(p["ttft"], "p99_ms"),
                _p(p["end"], "p50_ms"),
                _p(p["end"], "p99_ms"),
                f"{p['cpu_busy_pct']['other']:.0f}%",
            ]
            for p in passes
        ],
    )
    added = markdown_table(
        [
            "max_concurrent_runs",
            "c",
            "TTFT p50",
            "TTFT p99",
            "end p50",
            "end p99",
            "end mean",
            "wall ms/run",
            "runs/s bus/in-process",
        ],
        [
            [
                r["max_concurrent_runs"],
                r["concurrency"],
                f"{r['added_ttft_p50_ms']:+.2f}",
                f"{r['added_ttft_p99_ms']:+.2f}",
                f"{r['added_end_p50_ms']:+.2f}",
                f"{r['added_end_p99_ms']:+.2f}",
                f"{r['added_end_mean_ms']:+.2f}",
                f"{r['added_wall_ms_per_run']:+.2f}",
                f"{r['runs_s_ratio']:.2f}x",
            ]
            for r in res["comparison"]
        ],
    )
    cpu = markdown_table(
        [
            "max_concurrent_runs",
            "path",
            "c",
            "bench process",
            "orchestrator",
            "nats-server",
            "postgres",
            "ours, % of machine",
        ],
        [
            [
                p["max_concurrent_runs"],
                _label(p),
                p["concurrency"],
                *(
                    p["cpu_ms_per_run"].get(k, 0.0)
                    for k in ("bench", "orchestrator", "nats", "postgres")
                ),
                f"{p['cpu_busy_pct']['ours']:.0f}%",
            ]
            for p in passes
        ],
    )
    prim = res["bus_primitives"]
    primitives = (
        "Bus operations one at a time, idle: acked JetStream publish of a RunEvent p50 "
        f"{_p(prim['js_publish'], 'p50_ms'):.3f} ms (p99 {_p(prim['js_publish'], 'p99_ms'):.3f}),"
        f" get_last_msg p50 {_p(prim['get_last_msg'], 'p50_ms'):.3f} ms"
        f" (p99 {_p(prim['get_last_msg'], 'p99_ms'):.3f})."
    )
    targets = markdown_table(
        [
            "max_concurrent_runs",
            "c",
            "LangGraph dev runs/s (quoted)",
            "LangGraph dev TTFT p50 ms (quoted)",
            "ours runs/s",
            "ours TTFT p50 ms",
            "runs/s vs quoted (target >= 5x)",
            "TTFT p50 < 50 ms",
        ],
        [
            [
                t["max_concurrent_runs"],
                t["concurrency"],
                t["quoted_runs_s"],
                t["quoted_ttft_p50_ms"],
                t["runs_s"],
                t["ttft_p50_ms"],
                f"{t['ratio']:.1f}x",
                "yes" if t["ttft_p50_ms"] < TARGET_TTFT_P50_MS else "no",
            ]
            for t in res["design_targets"]
        ],
    )
    return "\n\n".join(
        [
            f"Runs of the `{ASSISTANT}` assistant ({res['words']} tokens, {res['service_mode']} "
            "orchestrator); times from just before the RunRequested publish (bus) or the start of "
            "the run (in-process). Other load = CPU used by processes outside this benchmark.",
            main,
            "Added by the bus (bus - in-process), ms:",
            added,
            "CPU ms per run (user + system). Bench process = the client on the bus path, the "
            "graph itself on the in-process path:",
            cpu,
            primitives,
            "DESIGN §8: LangGraph dev server numbers are QUOTED from DESIGN.md, not measured in "
            "this run; they go through its HTTP API and SDK, ours through NATS without the "
            f"gateway. Target: TTFT p50 < {TARGET_TTFT_P50_MS:g} ms, >= "
            f"{TARGET_RUNS_RATIO:g}x the runs/s (and < {TARGET_ADDED_TTFT_P50_MS:g} ms p50 added "
            "TTFT through the gateway, which this benchmark leaves out).",
            targets,
        ]
    )


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.run_overhead", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--concurrency", type=positive_ints, default=[1, 32, 256], help="runs in flight"
    )
    parser.add_argument(
        "--runs",
        type=positive_ints,
        default=[200, 640, 1280],
        help="measured runs per concurrency (same order as --concurrency)",
    )
    parser.add_argument(
        "--warmup",
        type=int,
        default=None,
        help="uncounted runs before each pass (default: max(20, concurrency))",
    )
    parser.add_argument(
        "--max-concurrent-runs",
        type=positive_ints,
        default=[8, 64],
        help="orchestrator setting(s) AGENTBUS_MAX_CONCURRENT_RUNS (the service default is 8); "
        "the service is restarted and the baseline re-measured for each. Its Postgres pool is "
        "this + 2 connections and the engine allows 100",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=2,
        help="interleaved segments per path and concurrency (A B B A ...)",
    )
    parser.add_argument(
        "--baseline-pool",
        type=int,
        default=None,
        help="Postgres connections of the in-process baseline (default: the orchestrator's, "
        "max_concurrent_runs + 2)",
    )
    parser.add_argument("--words", type=int, default=8, help="tokens per run (echoed words)")
    parser.add_argument("--timeout", type=float, default=120.0, help="per run, seconds")
    parser.add_argument(
        "--service",
        choices=["process", "inprocess"],
        default="process",
        help="orchestrator as its own process, as `agentbus up` starts it (default), or in "
        "this process with agentbus.runtime.testing.running (shares this event loop)",
    )
    parser.add_argument(
        "--json", type=Path, default=None, metavar="PATH", help="also write results as JSON"
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the temporary engine data and logs"
    )
    args = parser.parse_args(argv)
    if len(args.runs) != len(args.concurrency):
        parser.error("--runs needs one value per --concurrency value")
    if args.words < 1 or args.rounds < 1 or args.timeout <= 0:
        parser.error("--words, --rounds and --timeout must be positive")
    if args.warmup is not None and args.warmup < 0:
        parser.error("--warmup must not be negative")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    json_path = args.json.resolve() if args.json else None
    isolate_environment()
    info = machine_info()
    print(f"machine: {info}")
    started = time.perf_counter()
    load_before = os.getloadavg()
    with bench_root(args.keep) as root, engines(root) as plat:
        results = asyncio.run(measure(plat, args))
    results["comparison"] = comparison(results)
    results["design_targets"] = design_targets(results)
    results.update(
        {
            "machine": info,
            "command": " ".join(["python -m bench.run_overhead", *(argv or sys.argv[1:])]),
            "service_mode": args.service,
            "assistant": ASSISTANT,
            "words": args.words,
            "quoted": {
                "source": "DESIGN.md §8 (langgraph dev, langgraph-api 0.16.7, langgraph_sdk)",
                "langgraph_dev": QUOTED_LANGGRAPH_DEV,
                "targets": {
                    "ttft_p50_ms_below": TARGET_TTFT_P50_MS,
                    "runs_s_ratio_at_least": TARGET_RUNS_RATIO,
                    "added_ttft_p50_ms_below_through_gateway": TARGET_ADDED_TTFT_P50_MS,
                },
            },
            "loadavg_before": load_before,
            "loadavg_after": os.getloadavg(),
            "wall_s": time.perf_counter() - started,
        }
    )
    print()
    print(report(results))
    print(f"\ntotal {results['wall_s']:.0f}s")
    write_json(json_path, results)


if __name__ == "__main__":
    main()
