"""What the benchmarks share: isolated engines and services, synthetic text, timing and reports.

Benchmarks start their own engines (NATS, PostgreSQL + pgvector, the Bolt graph store) with
`agentbus.runtime.engines` on free 127.0.0.1 ports, with data in a temporary directory, and stop
them at the end. Nothing here talks to any other address: `isolate_environment()` drops every
`AGENTBUS_*` and `OTEL_*` variable from the caller's shell, services built in-process ignore any
`.env` file, and service processes run with the temporary directory as their working directory.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import platform as py_platform
import shutil
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import nats
import numpy as np
from nats.aio.client import Client as NatsClient

from agentbus.contracts import ServiceHealth
from agentbus.contracts import subjects as s
from agentbus.runtime.platform import Platform

ServiceMode = Literal["process", "inprocess"]
REPO_ROOT = Path(__file__).resolve().parents[1]


# -- environment -----------------------------------------------------------------------------


def isolate_environment() -> None:
    """Forget the shell's Agentbus and OpenTelemetry settings: engines and services of a
    benchmark are only ever the ones it starts itself."""
    for name in list(os.environ):
        if name.startswith(("AGENTBUS_", "OTEL_")):
            del os.environ[name]


def machine_info() -> dict[str, Any]:
    import psutil

    cpu = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    commit = ""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        commit = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        ).stdout.strip()
    return {
        # Other work on the machine skews every number: the 1-minute load average when the
        # benchmark started (before it loads anything itself).
        "load_average_at_start": round(os.getloadavg()[0], 2),
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cores": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "cpu": cpu,
        "python": py_platform.python_version(),
        "commit": commit,
    }


# -- engines and services --------------------------------------------------------------------


@contextlib.contextmanager
def bench_root(keep: bool) -> Iterator[Path]:
    """A fresh temporary directory for engine data and logs; removed afterwards unless `keep`."""
    root = Path(tempfile.mkdtemp(prefix="agentbus-bench-"))
    try:
        yield root
    finally:
        if keep:
            print(f"kept engine data and logs in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def engines(root: Path, extra_env: dict[str, str] | None = None) -> Iterator[Platform]:
    """NATS, PostgreSQL + pgvector and the graph store (plus the chDB directory) under `root`,
    on free loopback ports; stopped, with any service process started through the returned
    Platform, when the block ends. No service is started here."""
    plat = Platform(root / "var", services=(), extra_env=extra_env)
    previous_cwd = Path.cwd()
    # Service processes inherit the working directory: keep them away from a developer's .env.
    os.chdir(root)
    try:
        started = time.perf_counter()
        plat.engines.start_all(timeout=120)
        print(f"engines ready in {time.perf_counter() - started:.1f}s: {plat.engines.urls()}")
        yield plat
    finally:
        try:
            plat.stop()
        finally:
            os.chdir(previous_cwd)


def _service_factory(name: str) -> tuple[Any, Callable[[Any], Any]]:
    if name == "ingest":
        from agentbus.ingest.app import build as build_ingest
        from agentbus.ingest.settings import IngestSettings

        return IngestSettings, build_ingest
    if name == "retrieval":
        from agentbus.retrieval.app import build as build_retrieval
        from agentbus.retrieval.settings import RetrievalSettings

        return RetrievalSettings, build_retrieval
    raise ValueError(f"no benchmark support for service {name!r}")


async def _wait_healthy(
    nc: NatsClient, name: str, timeout: float, alive: Callable[[], str | None]
) -> None:
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        problem = alive()
        if problem is not None:
            raise RuntimeError(f"{name} stopped during start-up: {problem}")
        try:
            reply = await nc.request(s.health(name), b"", timeout=1.0)
            health = ServiceHealth.model_validate_json(reply.data)
            if health.ok:
                return
            last = ", ".join(f"{k}: {v.detail}" for k, v in health.checks.items() if not v.ok)
        except (nats.errors.TimeoutError, nats.errors.NoRespondersError):
            pass
        await asyncio.sleep(0.2)
    raise TimeoutError(f"{name} not healthy after {timeout:g}s ({last})")


@contextlib.asynccontextmanager
async def service(
    plat: Platform, name: str, mode: ServiceMode, timeout: float = 120.0
) -> AsyncIterator[None]:
    """Run the real service `name` against the engines of `plat` until the block ends.

    `process`: `python -m agentbus.<name>` as `agentbus up` starts it (JSON logs, file traces),
    stopped with SIGTERM. `inprocess`: `build(Settings(...))` under `runtime.testing.running`,
    sharing this process and its event loop.
    """
    nc = await nats.connect(plat.engines.nats.url)
    try:
        if mode == "process":
            plat.start_service(name)
            proc = plat.procs[name]

            def alive() -> str | None:
                code = proc.poll()
                return None if code is None else f"code {code}: {plat.last_output(name)}"

            try:
                await _wait_healthy(nc, name, timeout, alive)
                yield
            finally:
                await asyncio.to_thread(plat.stop_service, name)
        else:
            from agentbus.runtime.testing import running

            settings_cls, build = _service_factory(name)
            fields = {
                key.removeprefix("AGENTBUS_").lower(): value
                for key, value in plat.env().items()
                if key.startswith("AGENTBUS_")
            }
            settings = settings_cls(_env_file=None, **fields)
            async with running(build(settings), timeout=timeout):
                await _wait_healthy(nc, name, timeout, lambda: None)
                yield
    finally:
        await nc.close()


# -- synthetic text --------------------------------------------------------------------------


@dataclass(frozen=True)
class Vocabulary:
    """Real English words in rough frequency order: the whole-word entries of the MiniLM
    WordPiece vocabulary (BERT's), which starts "the of and in to was ...".

    Sampling ranks from a Zipf-Mandelbrot law gives text with natural word frequencies, so both
    the embedding model (sequence lengths) and PostgreSQL full-text search (how many rows share
    a query term) see realistic input.
    """

    words: tuple[str, ...]

    @classmethod
    def load(cls) -> Vocabulary:
        from agentbus.local_models.embedder import get_embedder

        vocab: dict[str, int] = get_embedder().tokenizer.get_vocab()
        ordered = sorted(vocab, key=vocab.__getitem__)
        words = tuple(w for w in ordered if w.isascii() and w.isalpha() and len(w) >= 2)
        return cls(words)

    def zipf_ranks(self, rng: np.random.Generator, n: int, s: float = 1.0) -> np.ndarray:
        ranks = np.arange(len(self.words), dtype=np.float64)
        weights = 1.0 / (ranks + 2.7) ** s
        return rng.choice(len(self.words), size=n, p=weights / weights.sum())


# -- timing and statistics -------------------------------------------------------------------


@dataclass
class ForeignLoad:
    """CPU used by processes outside this benchmark's process tree (this process, the engines
    and services it started) while a block ran: other work on the machine that skews results."""

    cpu_s: float = 0.0
    wall_s: float = 0.0

    @property
    def share(self) -> float:
        """Of the machine's total CPU capacity over the block, 0..1."""
        capacity = self.wall_s * (os.cpu_count() or 1)
        return self.cpu_s / capacity if capacity > 0 else 0.0


def _our_cpu_s() -> float:
    import psutil

    me = psutil.Process()
    total = 0.0
    for proc in [me, *me.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            times = proc.cpu_times()
            total += times.user + times.system
    return total


def _busy_cpu_s() -> float:
    import psutil

    t = psutil.cpu_times()
    # guest time is already part of user; steal is capacity the hypervisor gave to others.
    parts = ("user", "nice", "system", "irq", "softirq", "steal")
    return float(sum(getattr(t, name, 0.0) for name in parts))


@contextlib.contextmanager
def foreign_load() -> Iterator[ForeignLoad]:
    result = ForeignLoad()
    busy, ours, started = _busy_cpu_s(), _our_cpu_s(), time.perf_counter()
    try:
        yield result
    finally:
        result.wall_s = time.perf_counter() - started
        result.cpu_s = max(0.0, (_busy_cpu_s() - busy) - (_our_cpu_s() - ours))


def summarize(latencies_s: Sequence[float]) -> dict[str, float]:
    """p50/p90/p99/mean/max in milliseconds (linear interpolation between samples)."""
    values = np.asarray(latencies_s, dtype=np.float64) * 1e3
    if values.size == 0:
        return {"n": 0}
    return {
        "n": int(values.size),
        "p50_ms": float(np.percentile(values, 50)),
        "p90_ms": float(np.percentile(values, 90)),
        "p99_ms": float(np.percentile(values, 99)),
        "mean_ms": float(values.mean()),
        "max_ms": float(values.max()),
    }


@dataclass
class LoadResult:
    latencies_s: list[float]
    wall_s: float
    errors: int
    indices: list[int]  # the call index of each latency
    other_cpu_share: float = 0.0  # CPU share other processes used meanwhile (foreign_load)

    @property
    def qps(self) -> float:
        return len(self.latencies_s) / self.wall_s if self.wall_s > 0 else 0.0

    def report(self) -> dict[str, float]:
        return {
            **summarize(self.latencies_s),
            "qps": self.qps,
            "errors": self.errors,
            "other_cpu_share": self.other_cpu_share,
        }


async def closed_loop(
    call: Callable[[int], Awaitable[bool]], requests: int, concurrency: int
) -> LoadResult:
    """`concurrency` workers issue `requests` calls in total, each starting as soon as its
    previous one returned. `call(i)` returns False for a failed request (counted, not timed)."""
    latencies: list[float] = []
    indices: list[int] = []
    errors = 0
    next_index = 0

    async def worker() -> None:
        nonlocal next_index, errors
        while next_index < requests:
            i = next_index
            next_index += 1
            started = time.perf_counter()
            ok = await call(i)
            if ok:
                latencies.append(time.perf_counter() - started)
                indices.append(i)
            else:
                errors += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return LoadResult(latencies, time.perf_counter() - started, errors, indices)


# -- output ----------------------------------------------------------------------------------


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    def cell(value: object) -> str:
        if isinstance(value, float):
            return f"{value:,.1f}" if abs(value) >= 100 else f"{value:.2f}"
        return str(value)

    lines = [
        "| " + " | ".join(headers) + " |",
        "|" + "|".join("---" for _ in headers) + "|",
    ]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def write_json(path: Path | None, data: dict[str, Any]) -> None:
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")
    print(f"wrote {path}")


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--service",
        choices=["process", "inprocess"],
        default="process",
        help="run the service as its own process, as `agentbus up` does (default), or "
        "in this process with agentbus.runtime.testing.running",
    )
    parser.add_argument("--seed", type=int, default=7, help="seed of the synthetic data")
    parser.add_argument(
        "--json", type=Path, default=None, metavar="PATH", help="also write results as JSON"
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the temporary engine data and logs"
    )


def positive_ints(text: str) -> list[int]:
    values = [int(v) for v in text.split(",") if v.strip()]
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected positive integers like 1,16, got {text!r}")
    return values
