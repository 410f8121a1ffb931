"""The LangGraph API as users reach it: the official `langgraph_sdk` client against `langgraph
dev` and against Agentbus, with the same graph file, in the same run.

- **Graph.** `bench/langgraph_dev_graph/langgraph.json` names one graph, `fake_chat`: one node
  calling langchain-core's fake chat model, which streams a fixed 20-word answer one word per
  chunk. Both servers load this same file from this same config.
- **langgraph dev.** `langgraph-cli[inmem]` (pinned below) is installed from PyPI into the
  benchmark's own virtual environment (`var/bench-langgraph-dev`, created on first use), and
  `langgraph dev --no-reload --no-browser` serves the config on a free 127.0.0.1 port, with its
  defaults (in-memory runtime, its own worker pool).
- **Agentbus.** Embedded engines (NATS, PostgreSQL, graph store) and the orchestrator and ONE
  gateway as their own processes, as `agentbus up` runs them, with
  `AGENTBUS_LANGGRAPH_CONFIG` pointing at the same langgraph.json; rate limits raised so they
  never refuse. `--orchestrators 2` starts a second orchestrator replica.
- **One run** = `threads.create()` then `runs.stream(thread, "fake_chat", input=20-word user
  message, stream_mode="messages-tuple")` read to its end. TTFT = first `messages` part with
  content, measured from just before `threads.create` (thread creation included); total = end
  of the stream. Each server gets one SDK client with a connection pool big enough for `c`.
- **Fairness.** For each concurrency, segments run interleaved A B B A after a warm-up of each;
  CPU seconds of each process tree (psutil) are taken per segment and divided by its runs;
  the 1-minute load average is printed with every segment.

Run: `.venv/bin/python -m bench.langgraph_api_vs_dev [--concurrency 1,32,256]
[--runs 20,256,768] [--orchestrators 1] [--json out.json]`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python bench/langgraph_api_vs_dev.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx
import psutil
from langgraph_sdk.client import LangGraphClient

from agentbus.runtime.engines import free_port
from agentbus.runtime.platform import Platform
from agentbus.runtime.testing import RAISED_RATE_LIMITS
from bench.common import (
    REPO_ROOT,
    bench_root,
    isolate_environment,
    machine_info,
    markdown_table,
    positive_ints,
    summarize,
    write_json,
)

GRAPH_DIR = Path(__file__).with_name("langgraph_dev_graph")
CONFIG = GRAPH_DIR / "langgraph.json"
GRAPH_ID = "fake_chat"
DEV_VENV = REPO_ROOT / "var" / "bench-langgraph-dev"
# Pinned: the versions the figures in bench/README.md were measured with.
DEV_PACKAGES = ("langgraph-cli[inmem]==0.4.40", "langgraph-api==0.16.7")
MESSAGE = " ".join(f"question{i}" for i in range(20))
INPUT: dict[str, Any] = {"messages": [{"role": "user", "content": MESSAGE}]}


# -- servers ---------------------------------------------------------------------------------


def ensure_dev_venv() -> Path:
    """The benchmark's own environment with `langgraph dev`; created from PyPI on first use."""
    exe = DEV_VENV / "bin" / "langgraph"
    if not exe.exists():
        print(f"installing {' '.join(DEV_PACKAGES)} into {DEV_VENV} ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(DEV_VENV)], check=True)
        pip = [str(DEV_VENV / "bin" / "python"), "-m", "pip", "install", "-q"]
        subprocess.run([*pip, *DEV_PACKAGES], check=True)
    return exe


def dev_versions() -> dict[str, str]:
    code = (
        "import importlib.metadata as m, json;"
        "print(json.dumps({p: m.version(p) for p in "
        "('langgraph-cli','langgraph-api','langgraph','langgraph-runtime-inmem','langchain-core')}))"
    )
    out = subprocess.run(
        [str(DEV_VENV / "bin" / "python"), "-c", code], capture_output=True, text=True, check=True
    )
    result: dict[str, str] = json.loads(out.stdout)
    return result


@contextlib.contextmanager
def langgraph_dev(root: Path) -> Any:
    """`langgraph dev` on a free port; yields (url, pid). Stopped with SIGTERM at the end."""
    exe = ensure_dev_venv()
    port = free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("LANGSMITH", "LANGCHAIN", "LANGGRAPH", "OPENAI"))
    }
    env.update(
        {
            "LANGGRAPH_CLI_NO_ANALYTICS": "1",
            "LANGSMITH_TRACING": "false",
            "LANGCHAIN_TRACING_V2": "false",
            "PYTHONUNBUFFERED": "1",
        }
    )
    log = (root / "langgraph-dev.log").open("w")
    proc = subprocess.Popen(
        [
            str(exe),
            "dev",
            "--config",
            str(CONFIG),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--no-browser",
            "--no-reload",
        ],
        cwd=GRAPH_DIR,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"langgraph dev exited: see {root / 'langgraph-dev.log'}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/ok", timeout=1).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise TimeoutError("langgraph dev did not answer /ok in 120 s")
            time.sleep(0.3)
        yield url, proc.pid
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


def agentbus_env(orchestrators: int, per_tenant: int | None = None) -> dict[str, str]:
    env = {
        "AGENTBUS_LANGGRAPH_CONFIG": str(CONFIG),
        "AGENTBUS_RATE_LIMITS": json.dumps(RAISED_RATE_LIMITS),
        "AGENTBUS_DIAGNOSTIC_ASSISTANTS": "false",
    }
    if per_tenant is not None:
        # One tenant drives every run here; by default a replica runs 8 of a tenant's runs at
        # once and NAKs the rest with delays of 2, 10, 30 and 60 s (fairness between tenants).
        env["AGENTBUS_MAX_RUNS_PER_TENANT"] = str(per_tenant)
    return env


@dataclass
class Agentbus:
    plat: Platform
    url: str
    key: str
    pids: dict[str, int] = field(default_factory=dict)
    extra: list[subprocess.Popen[str]] = field(default_factory=list)


@contextlib.contextmanager
def agentbus(root: Path, orchestrators: int, per_tenant: int | None = None) -> Any:
    plat = Platform(
        root / "var",
        gateway_port=free_port(),
        services=("orchestrator", "gateway"),
        extra_env=agentbus_env(orchestrators, per_tenant),
    )
    previous = Path.cwd()
    os.chdir(root)
    extra: list[subprocess.Popen[str]] = []
    try:
        plat.engines.start_all(timeout=120)
        plat.start_service("orchestrator")
        for _ in range(orchestrators - 1):
            env = plat.env()
            env["AGENTBUS_OPS_PORT"] = str(free_port())
            extra.append(
                subprocess.Popen(  # a second replica: same durable consumer, own ops port
                    [sys.executable, "-m", "agentbus.orchestrator"],
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=(root / f"orchestrator-{len(extra) + 2}.log").open("w"),
                    stderr=subprocess.STDOUT,
                    text=True,
                    start_new_session=True,
                )
            )
        plat.start_service("gateway")
        key_file = plat.data_dir / "dev-api-key"
        deadline = time.monotonic() + 300
        while True:
            for name, proc in plat.procs.items():
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited: {plat.last_output(name)}")
            with contextlib.suppress(httpx.HTTPError, OSError):
                key = key_file.read_text().strip()
                r = httpx.post(
                    f"{plat.gateway_url}/assistants/search",
                    json={"graph_id": GRAPH_ID},
                    headers={"x-api-key": key},
                    timeout=2,
                )
                if r.status_code == 200 and r.json():
                    break
            if time.monotonic() > deadline:
                raise TimeoutError(f"the gateway did not serve {GRAPH_ID} in 300 s")
            time.sleep(0.3)
        pids = {
            "gateway": plat.procs["gateway"].pid,
            "orchestrator": plat.procs["orchestrator"].pid,
        }
        for i, proc in enumerate(extra):
            pids[f"orchestrator-{i + 2}"] = proc.pid
        for engine in (plat.engines.nats, plat.engines.postgres):
            if engine.pids():
                pids[engine.name] = engine.pids()[0]
        yield Agentbus(plat, plat.gateway_url, key, pids, extra)
    finally:
        for proc in extra:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(20)
        plat.stop()
        os.chdir(previous)


# -- the client ------------------------------------------------------------------------------


def sdk_client(url: str, key: str | None, connections: int) -> LangGraphClient:
    """The official SDK client (what `get_client` builds) with a pool for `connections`
    requests at once: httpx's default of 100 would make c=256 wait for connections."""
    headers = {"x-api-key": key} if key else {}
    http = httpx.AsyncClient(
        base_url=url,
        transport=httpx.AsyncHTTPTransport(
            retries=5,
            limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
        ),
        timeout=httpx.Timeout(connect=30, read=300, write=300, pool=300),
        headers=headers,
    )
    return LangGraphClient(http)


@dataclass
class Timing:
    ttft_s: float
    total_s: float


async def one_run(client: LangGraphClient) -> Timing:
    started = time.perf_counter()
    thread = await client.threads.create()
    first: float | None = None
    words = 0
    async for part in client.runs.stream(
        thread["thread_id"],
        GRAPH_ID,
        input=INPUT,
        stream_mode="messages-tuple",
    ):
        if part.event == "error":
            raise RuntimeError(f"run error: {part.data}")
        if part.event == "messages":
            chunk: Any = part.data[0] if isinstance(part.data, list) and part.data else {}
            if (
                isinstance(chunk, dict)
                and chunk.get("type", "").startswith("AIMessage")
                and chunk.get("content")
            ):
                words += 1
                if first is None:
                    first = time.perf_counter()
    end = time.perf_counter()
    if first is None or words < 20:
        raise RuntimeError(f"the stream held {words} of 20 words")
    return Timing(first - started, end - started)


class CpuMeter:
    """CPU seconds (user + system) of named process trees, and the machine's busy time."""

    def __init__(self, roots: dict[str, int]) -> None:
        self.roots = roots
        self.before: dict[str, float] = {}

    def sample(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for name, pid in self.roots.items():
            total = 0.0
            with contextlib.suppress(psutil.Error):
                root = psutil.Process(pid)
                tree = [] if pid == os.getpid() else root.children(recursive=True)
                for proc in [root, *tree]:
                    with contextlib.suppress(psutil.Error):
                        cpu = proc.cpu_times()
                        total += cpu.user + cpu.system
            out[name] = total
        machine = psutil.cpu_times()
        out["machine"] = sum(machine) - machine.idle - getattr(machine, "iowait", 0.0)
        return out

    def __enter__(self) -> CpuMeter:
        self.before = self.sample()
        return self

    def spent(self) -> dict[str, float]:
        after = self.sample()
        spent = {k: after[k] - self.before.get(k, 0.0) for k in after}
        ours = sum(v for k, v in spent.items() if k != "machine")
        spent["other"] = max(0.0, spent.pop("machine") - ours)
        return spent

    def __exit__(self, *_: object) -> None:
        pass


@dataclass
class Pass:
    server: str
    concurrency: int
    ttft: list[float] = field(default_factory=list)
    total: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    wall_s: float = 0.0
    cpu_s: dict[str, float] = field(default_factory=dict)
    loads: list[float] = field(default_factory=list)

    def report(self) -> dict[str, Any]:
        runs = len(self.ttft)
        return {
            "server": self.server,
            "c": self.concurrency,
            "runs": runs,
            "errors": len(self.errors),
            "error_examples": self.errors[:3],
            "runs_per_s": runs / self.wall_s if self.wall_s else 0.0,
            "ttft": summarize(self.ttft),
            "total": summarize(self.total),
            "cpu_ms_per_run": {k: v * 1e3 / max(runs, 1) for k, v in self.cpu_s.items()},
            "load_avg": self.loads,
        }


async def in_flight(call: Callable[[], Awaitable[Timing]], runs: int, c: int, into: Pass) -> None:
    remaining = runs

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            try:
                t = await call()
            except Exception as exc:  # counted and shown, not timed
                into.errors.append(f"{type(exc).__name__}: {exc}"[:300])
            else:
                into.ttft.append(t.ttft_s)
                into.total.append(t.total_s)

    await asyncio.gather(*(worker() for _ in range(c)))


async def segment(
    name: str, client: LangGraphClient, roots: dict[str, int], runs: int, c: int, into: Pass
) -> None:
    load = os.getloadavg()[0]
    into.loads.append(round(load, 2))
    meter = CpuMeter({"bench": os.getpid(), **roots})
    with meter:
        started = time.perf_counter()
        await in_flight(partial(one_run, client), runs, c, into)
        into.wall_s += time.perf_counter() - started
        for k, v in meter.spent().items():
            into.cpu_s[k] = into.cpu_s.get(k, 0.0) + v
    done = len(into.ttft)
    print(
        f"  {name:<9} c={c:<4} {runs} runs in segment, load {load:.2f}; so far {done} ok, "
        f"{len(into.errors)} errors, TTFT p50 {summarize(into.ttft).get('p50_ms', 0):.1f} ms",
        flush=True,
    )


async def measure(
    args: argparse.Namespace, dev_url: str, dev_pid: int, ours: Agentbus
) -> list[Pass]:
    results: list[Pass] = []
    biggest = max(args.concurrency) + 8
    dev = sdk_client(dev_url, None, biggest)
    bus = sdk_client(ours.url, ours.key, biggest)
    servers = {
        "langgraph dev": (dev, {"langgraph dev": dev_pid}),
        "agentbus": (bus, ours.pids),
    }
    try:
        for name, (client, _) in servers.items():  # warm-up: imports, pools, first compile
            warm = Pass(name, 1)
            await in_flight(partial(one_run, client), 5, 1, warm)
            if warm.errors:
                raise RuntimeError(f"{name} warm-up failed: {warm.errors[0]}")
        for c, runs in zip(args.concurrency, args.runs, strict=True):
            per = {name: Pass(name, c) for name in servers}
            half = max(1, runs // 2)
            order = ["langgraph dev", "agentbus", "agentbus", "langgraph dev"]
            for name in order:
                client, roots = servers[name]
                await segment(name, client, roots, half, c, per[name])
            results.extend(per.values())
    finally:
        await dev.aclose()
        await bus.aclose()
    return results


# -- report ----------------------------------------------------------------------------------


def report(passes: list[Pass], info: dict[str, Any]) -> str:
    rows = []
    for p in passes:
        r = p.report()
        rows.append(
            [
                r["server"],
                r["c"],
                f"{r['runs']}/{r['runs'] + r['errors']}",
                r["runs_per_s"],
                r["ttft"].get("p50_ms", float("nan")),
                r["ttft"].get("p99_ms", float("nan")),
                r["total"].get("p50_ms", float("nan")),
                r["total"].get("p99_ms", float("nan")),
                ", ".join(f"{x:.1f}" for x in r["load_avg"]),
            ]
        )
    out = [
        markdown_table(
            [
                "server",
                "c",
                "runs ok",
                "runs/s",
                "TTFT p50 ms",
                "TTFT p99 ms",
                "total p50 ms",
                "total p99 ms",
                "load avg per segment",
            ],
            rows,
        ),
        "",
    ]
    ratio_rows = []
    by = {(p.server, p.concurrency): p.report() for p in passes}
    for c in sorted({p.concurrency for p in passes}):
        d, a = by.get(("langgraph dev", c)), by.get(("agentbus", c))
        if not d or not a:
            continue
        ratio_rows.append(
            [
                c,
                a["runs_per_s"] / d["runs_per_s"] if d["runs_per_s"] else float("nan"),
                d["ttft"].get("p50_ms", 0) / a["ttft"].get("p50_ms", 1),
                d["total"].get("p50_ms", 0) / a["total"].get("p50_ms", 1),
            ]
        )
    out += [
        markdown_table(
            ["c", "runs/s agentbus / dev", "TTFT p50 dev / agentbus", "total p50 dev / agentbus"],
            ratio_rows,
        ),
        "",
    ]
    cpu_rows = []
    for p in passes:
        r = p.report()
        cpu = r["cpu_ms_per_run"]
        cpu_rows.append(
            [
                r["server"],
                r["c"],
                ", ".join(f"{k} {v:.2f}" for k, v in cpu.items() if k != "other"),
                cpu.get("other", 0.0),
            ]
        )
    out += [
        markdown_table(
            ["server", "c", "CPU ms per run, per process", "others' CPU ms per run"], cpu_rows
        ),
        "",
        f"commit {info['commit']}, {info['date']}, load average at start "
        f"{info['load_average_at_start']}",
    ]
    return "\n".join(out)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--concurrency", type=positive_ints, default=[1, 32, 256])
    parser.add_argument(
        "--runs",
        type=positive_ints,
        default=[20, 256, 768],
        help="runs per server at each concurrency (split into two interleaved segments)",
    )
    parser.add_argument("--orchestrators", type=int, default=1, help="orchestrator replicas")
    parser.add_argument(
        "--max-runs-per-tenant",
        type=int,
        default=None,
        help="AGENTBUS_MAX_RUNS_PER_TENANT (default: the orchestrator's, 8 per replica)",
    )
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--keep", action="store_true", help="keep engine data and logs")
    args = parser.parse_args(argv)
    if len(args.runs) != len(args.concurrency):
        parser.error("--runs needs one count per --concurrency value")
    return args


async def amain(args: argparse.Namespace) -> None:
    isolate_environment()
    info = machine_info()
    info["langgraph_dev"] = dev_versions() if (DEV_VENV / "bin" / "python").exists() else {}
    with bench_root(args.keep) as root, langgraph_dev(root) as (dev_url, dev_pid):
        info["langgraph_dev"] = dev_versions()
        print(f"langgraph dev {info['langgraph_dev']} at {dev_url}", flush=True)
        with agentbus(root, args.orchestrators, args.max_runs_per_tenant) as ours:
            print(f"agentbus at {ours.url}, {args.orchestrators} orchestrator(s)", flush=True)
            passes = await measure(args, dev_url, dev_pid, ours)
    text = report(passes, info)
    print(text)
    write_json(
        args.json,
        {
            "machine": info,
            "orchestrators": args.orchestrators,
            "max_runs_per_tenant": args.max_runs_per_tenant,
            "passes": [p.report() for p in passes],
        },
    )


def main(argv: Sequence[str] | None = None) -> None:
    asyncio.run(amain(parse_args(argv)))


if __name__ == "__main__":
    main()
