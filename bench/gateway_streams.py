"""Gateway streams: SSE streams held by one gateway process, and time to first token through the
gateway vs. the orchestrator alone, in the same run.

Everything runs as `agentbus up` runs it: embedded NATS, PostgreSQL and the graph store on free
127.0.0.1 ports, the orchestrator and ONE gateway as their own processes
(`python -m agentbus.<name>`), the offline local model (`local/extractive` through LiteLLM, no
key). The retrieval service is not started, so the `agent` assistant's tool calls come back at
once with "not available" and the model answers from that ("I found nothing about ..."): a full
supervisor -> tools -> supervisor run with streamed tokens, without search cost. The client is
this process (aiohttp, one event loop); its file limit and the gateway's are raised to the hard
limit. Rate limits are set to 1,000,000/second for every route so that they never refuse a
request; refusals (429) are still counted.

A core NATS subscription on `agentbus.v1.runs.events.>` in this process timestamps every run
event when it reaches the bus ("bus time"). The SSE `id:` of an event is its seq, so each SSE
event of a run can be matched to the same event on the bus.

1. Time to first token, one run at a time, for each assistant (`agent` by default, and `echo`,
   the instant model of bench/run_overhead.py). Paths, measured in interleaved segments
   (A B C C B A ...) so load from elsewhere hits them alike:
   - `bus`: the orchestrator alone. `RunRequested` published to JetStream
     (`agentbus.v1.runs.submit`, `Nats-Msg-Id` = run_id), events read from the subscription above,
     as bench/run_overhead.py does. TTFT = first `token` event - just before the publish.
   - `gateway`: `POST /api/v1/chat/stream` with the dev API key (new thread each time, like the
     bus path), SSE parsed as it arrives. TTFT = first `token` SSE event - just before the
     request. Split into "to bus" (the same token on the bus - request start: HTTP, auth, rate
     limit, thread and run rows, publish, the orchestrator) and "bus to SSE" (the SSE event -
     the same event on the bus: the gateway's ordered consumer, framing, HTTP).
   - `in-process` (echo only): the graph driven by `astream` in this process with the
     orchestrator's checkpointer (bench/run_overhead.py's Baseline), DESIGN §8's baseline.
2. Streams held by the gateway process:
   - Baseline in the same run: `--active` chat clients (`POST /api/v1/chat/stream`, `echo` with
     `--active-words` tokens by default) for `--active-seconds`, each starting its next chat
     when the previous one ended (after `--think` seconds; 0 is a closed loop at full speed).
     Reported: chats started/completed, TTFT and end, event delivery latency (SSE arrival -
     bus arrival, every event with an id), gateway CPU per chat and RSS peak.
   - `--idle` streams `GET /api/v1/runs/{run_id}/stream` of runs that stay open: the run rows
     are created in the gateway's store (`GatewayStore.create_run`, what the gateway does when a
     run is accepted) but no RunRequested is published, so each stream waits with no event,
     exactly like a run queued behind the orchestrator's concurrency limit, and gets the 15 s
     heartbeat comment. Opened `--open-concurrency` at a time. Open = the gateway's JetStream
     consumers on RUN_EVENTS reached the number of streams (counted by the server). Each
     stream is one consumer, and nats-server 2.15 allows 1000 per stream unless the stream
     sets a limit, so RUN_EVENTS' limit is raised to `--max-consumers` first (0: keep it).
   - Gateway memory (VmRSS of /proc/<pid>/status) and open files, and nats-server's, before and
     after; memory per stream = RSS delta / streams. Then the idle streams are held alone for
     `--idle-hold` seconds (the CPU that holding them costs).
   - The same active load again, next to the idle streams.
   - All idle streams must still be open at the end, with a heartbeat at least every ~15 s
     (largest gap between heartbeats reported). Then they are closed, and gateway RSS, open
     files and the RUN_EVENTS consumer count are read again; with `--second-round` (default)
     the same number of streams is opened and closed once more. A leak shows as memory, files
     or consumers that grow again or do not go back to where they started.
   A 429 is counted and retried after its Retry-After; the benchmark stops at once if the
   orchestrator or the gateway exits.

Run: `.venv/bin/python -m bench.gateway_streams [--idle 2000] [--active 200]
[--active-seconds 30] [--think 0] [--ttft-runs 100] [--assistants agent,echo]
[--max-consumers 10000] [--json out.json]`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import resource
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

if __package__ in (None, ""):  # `python bench/gateway_streams.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import aiohttp
import asyncpg
import nats
import numpy as np
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from agentbus.contracts import RunRequested, new_id
from agentbus.contracts import subjects as s
from agentbus.contracts.streams import RUN_EVENTS
from agentbus.gateway.store import GatewayStore
from agentbus.runtime.engines import NatsEngine, free_port
from agentbus.runtime.platform import Platform
from bench.common import (
    bench_root,
    engines,
    isolate_environment,
    machine_info,
    markdown_table,
    service,
    summarize,
    write_json,
)
from bench.run_overhead import Baseline, CpuMeter, cpu_roots

TENANT = "dev"  # the gateway's dev tenant: its key is in <data_dir>/dev-api-key
EVENTS_PREFIX = s.run_events("x")[:-1]  # "agentbus.v1.runs.events."
HEARTBEAT_S = 15.0  # the gateway's heartbeat interval (runs.HEARTBEAT_S)
# Generous enough never to refuse: the benchmark measures streams, not the limiter.
RATE_LIMITS = {r: "1000000/second" for r in ("chat", "stream", "register", "login", "upload")}
QUESTION = "how do we roll back a deployment of the payments service?"
ECHO_WORDS = 8  # as bench/run_overhead.py


def message_for(assistant: str, words: int = ECHO_WORDS) -> str:
    if assistant == "echo":
        return " ".join(f"word{i}" for i in range(words))
    return QUESTION


# -- processes -------------------------------------------------------------------------------


def proc_status(pid: int | None) -> dict[str, float]:
    """Memory (MiB), open files and threads of a process, from /proc."""
    if pid is None:
        return {}
    out: dict[str, float] = {}
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM", "RssAnon"):
                out[key] = int(value.split()[0]) / 1024  # kB -> MiB
            elif key == "Threads":
                out[key] = int(value)
        out["fds"] = len(os.listdir(f"/proc/{pid}/fd"))
    return out


def raise_file_limit() -> tuple[int, int]:
    """Soft limit of open files up to the hard limit; services started later inherit it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def percentiles(values_s: Sequence[float]) -> dict[str, float]:
    """p50/p95/p99/mean/max in ms (plus n)."""
    base = summarize(values_s)
    if values_s:
        base["p95_ms"] = float(np.percentile(np.asarray(values_s) * 1e3, 95))
    return base


# -- the bus tap: when each event reached the bus --------------------------------------------


class BusTap:
    """Arrival time of every run event on the bus, by run and seq, from one core subscription.

    Runs are recorded whether or not anyone waits for them yet: the gateway path learns its
    run_id only from the response headers, possibly after the first events were published."""

    def __init__(self, nc: NatsClient) -> None:
        self.nc = nc
        self.arrivals: dict[str, dict[int, float]] = {}
        self.first_token: dict[str, float] = {}
        self.ended: dict[str, asyncio.Future[str | None]] = {}

    async def start(self) -> None:
        await self.nc.subscribe(
            s.RUN_EVENTS_ALL,
            cb=self._on_event,
            pending_msgs_limit=1_000_000,
            pending_bytes_limit=1 << 30,
        )
        await self.nc.flush()

    def _end_future(self, run_id: str) -> asyncio.Future[str | None]:
        fut = self.ended.get(run_id)
        if fut is None:
            fut = self.ended[run_id] = asyncio.get_running_loop().create_future()
        return fut

    async def _on_event(self, msg: Msg) -> None:
        now = time.perf_counter()
        run_id = msg.subject[len(EVENTS_PREFIX) :]
        event = json.loads(msg.data)
        self.arrivals.setdefault(run_id, {})[int(event["seq"])] = now
        kind = event["type"]
        if kind == "token":
            self.first_token.setdefault(run_id, now)
        elif kind == "end":
            fut = self._end_future(run_id)
            if not fut.done():
                fut.set_result(event.get("status"))

    async def wait_end(self, run_id: str, timeout: float) -> str | None:
        return await asyncio.wait_for(asyncio.shield(self._end_future(run_id)), timeout)

    def forget(self, run_id: str) -> None:
        self.arrivals.pop(run_id, None)
        self.first_token.pop(run_id, None)
        self.ended.pop(run_id, None)


# -- one chat: through the gateway, or on the bus --------------------------------------------


@dataclass
class Chat:
    path: str
    t0: float = 0.0
    run_id: str = ""
    first_token: float | None = None
    end: float | None = None
    status: str | None = None
    http_status: int = 0
    bus_first_token: float | None = None  # the same first token, on the bus
    delivery_s: list[float] = field(default_factory=list)  # SSE arrival - bus arrival, per event
    events: int = 0

    @property
    def ok(self) -> bool:
        return self.end is not None and self.status == "success" and self.first_token is not None


def _field(line: bytes, name: bytes) -> str | None:
    if line.startswith(name + b":"):
        return line[len(name) + 1 :].strip().decode()
    return None


async def gateway_chat(
    session: aiohttp.ClientSession,
    base: str,
    key: str,
    assistant: str,
    tap: BusTap,
    timeout: float,
    words: int = ECHO_WORDS,
) -> Chat:
    """One `POST /api/v1/chat/stream`, read to `stream_end`, every SSE event timestamped."""
    chat = Chat("gateway")
    body = {"message": message_for(assistant, words), "assistant_id": assistant}
    sse_times: dict[int, float] = {}

    async def read() -> None:
        chat.t0 = time.perf_counter()
        async with session.post(
            f"{base}/api/v1/chat/stream", json=body, headers={"x-api-key": key}
        ) as resp:
            chat.http_status = resp.status
            if resp.status != 200:
                await resp.read()
                return
            # Content-Location: /api/v1/runs/<run_id>/stream
            chat.run_id = resp.headers.get("Content-Location", "").split("/")[-2]
            name: str | None = None
            event_id: int | None = None
            data = b""
            async for raw in resp.content:
                now = time.perf_counter()
                line = raw.rstrip(b"\r\n")
                if line:
                    if (value := _field(line, b"event")) is not None:
                        name = value
                    elif (value := _field(line, b"id")) is not None:
                        event_id = int(value)
                    elif line.startswith(b"data:"):
                        data = line[5:]
                    continue
                if name is None:
                    continue  # a heartbeat comment
                chat.events += 1
                if event_id is not None:
                    sse_times.setdefault(event_id, now)
                if name == "token" and chat.first_token is None:
                    chat.first_token = now
                elif name == "response":
                    chat.status = json.loads(data).get("status")
                elif name == "stream_end":
                    chat.end = now
                    return
                name, event_id, data = None, None, b""

    try:
        await asyncio.wait_for(read(), timeout)
    except (TimeoutError, aiohttp.ClientError, ValueError) as exc:
        chat.status = chat.status or f"client error: {type(exc).__name__}"
    if chat.run_id:
        if chat.end is not None:
            # The client may parse an event before this loop ran the tap's callback for it.
            with contextlib.suppress(TimeoutError):
                await tap.wait_end(chat.run_id, 5.0)
        bus = tap.arrivals.get(chat.run_id, {})
        chat.bus_first_token = tap.first_token.get(chat.run_id)
        chat.delivery_s = [t - bus[seq] for seq, t in sse_times.items() if seq in bus]
        tap.forget(chat.run_id)
    return chat


async def bus_chat(nc: NatsClient, tap: BusTap, assistant: str, timeout: float) -> Chat:
    """The orchestrator alone: RunRequested on JetStream, events from the tap."""
    run = RunRequested(
        tenant_id=TENANT,
        run_id=new_id(),
        thread_id=new_id(),
        assistant_id=assistant,
        input={"messages": [{"role": "user", "content": message_for(assistant)}]},
    )
    chat = Chat("bus", run_id=run.run_id)
    body = run.model_dump_json().encode()
    chat.t0 = time.perf_counter()
    try:
        await nc.jetstream().publish(s.RUNS_SUBMIT, body, headers={"Nats-Msg-Id": run.run_id})
        chat.status = await tap.wait_end(run.run_id, timeout)
        chat.end = time.perf_counter()  # not used for "end": the tap's time is exact
        chat.first_token = tap.first_token.get(run.run_id)
        arrivals = tap.arrivals.get(run.run_id, {})
        chat.events = len(arrivals)
        if arrivals:
            chat.end = max(arrivals.values())
    except TimeoutError:
        chat.status = "timeout"
    finally:
        tap.forget(run.run_id)
    return chat


async def in_process_chat(baseline: Baseline) -> Chat:
    timing = await baseline.run_once(ECHO_WORDS)
    return Chat(
        "in-process",
        t0=timing.t0,
        first_token=timing.first_token,
        end=timing.end,
        status=timing.status,
        events=timing.events,
    )


# -- part 1: time to first token -------------------------------------------------------------


def chat_report(chats: Sequence[Chat]) -> dict[str, Any]:
    ok = [c for c in chats if c.ok]
    ttft = [c.first_token - c.t0 for c in ok if c.first_token is not None]
    end = [c.end - c.t0 for c in ok if c.end is not None]
    to_bus = [c.bus_first_token - c.t0 for c in ok if c.bus_first_token is not None]
    egress = [
        c.first_token - c.bus_first_token
        for c in ok
        if c.first_token is not None and c.bus_first_token is not None
    ]
    delivery = [d for c in ok for d in c.delivery_s]
    statuses: dict[str, int] = {}
    for c in chats:
        if not c.ok:
            key = f"http {c.http_status}" if c.http_status not in (0, 200) else str(c.status)
            statuses[key] = statuses.get(key, 0) + 1
    return {
        "runs": len(chats),
        "ok": len(ok),
        "failures": statuses,
        "events_per_run": sum(c.events for c in ok) / len(ok) if ok else 0.0,
        "ttft": percentiles(ttft),
        "end": percentiles(end),
        "ttft_to_bus": percentiles(to_bus),
        "first_token_bus_to_sse": percentiles(egress),
        "delivery": percentiles(delivery),
    }


async def measure_ttft(
    assistant: str,
    paths: dict[str, Callable[[], Awaitable[Chat]]],
    args: argparse.Namespace,
    meter: CpuMeter,
) -> dict[str, Any]:
    chats: dict[str, list[Chat]] = {name: [] for name in paths}
    cpu: dict[str, dict[str, float]] = {name: {} for name in paths}
    for call in paths.values():
        for _ in range(args.warmup):
            await call()
    order = list(paths)
    sizes = [
        args.ttft_runs // args.rounds + (i < args.ttft_runs % args.rounds)
        for i in range(args.rounds)
    ]
    for i, size in enumerate(sizes):
        for name in order if i % 2 == 0 else order[::-1]:
            meter.start()
            for _ in range(size):
                chats[name].append(await paths[name]())
            for k, v in meter.stop().items():
                cpu[name][k] = cpu[name].get(k, 0.0) + v
    out: dict[str, Any] = {}
    for name, done in chats.items():
        report = chat_report(done)
        runs = max(1, report["ok"])
        report["cpu_ms_per_run"] = {k: v * 1e3 / runs for k, v in cpu[name].items()}
        out[name] = report
        print(
            f"  {assistant:<6} {name:<10} {report['ok']}/{report['runs']} ok,"
            f" TTFT p50 {report['ttft'].get('p50_ms', float('nan')):7.2f} ms"
            f" p95 {report['ttft'].get('p95_ms', float('nan')):7.2f} ms,"
            f" end p50 {report['end'].get('p50_ms', float('nan')):7.2f} ms"
        )
    return out


# -- part 2: held streams --------------------------------------------------------------------


@dataclass
class IdleStream:
    run_id: str
    status: int = 0
    refused: int = 0  # 429 answers before it opened (retried after Retry-After)
    opened: float | None = None
    closed: float | None = None  # by the server or an error, before we closed it
    close_reason: str = ""
    heartbeats: list[float] = field(default_factory=list)
    events: int = 0


MAX_REFUSALS = 20


async def hold_idle(
    session: aiohttp.ClientSession,
    base: str,
    key: str,
    stream: IdleStream,
    gate: asyncio.Semaphore,
    answered: Callable[[], None],
) -> None:
    """Open the run's stream and read it until cancelled; note heartbeats and any end.

    A 429 is counted and retried after its Retry-After, so that every stream is held: the
    limits are set far above what this benchmark sends (see the report on refusals)."""
    acquired = True
    await gate.acquire()
    try:
        while True:
            async with session.get(
                f"{base}/api/v1/runs/{stream.run_id}/stream", headers={"x-api-key": key}
            ) as resp:
                stream.status = resp.status
                if resp.status == 429 and stream.refused < MAX_REFUSALS:
                    stream.refused += 1
                    await resp.read()
                    retry = float(resp.headers.get("Retry-After", "1"))
                    gate.release()
                    acquired = False
                    await asyncio.sleep(retry)
                    await gate.acquire()
                    acquired = True
                    continue
                stream.opened = time.perf_counter()
                gate.release()
                acquired = False
                answered()
                if resp.status != 200:
                    stream.close_reason = f"http {resp.status}: {(await resp.read())[:200]!r}"
                    stream.closed = time.perf_counter()
                    return
                async for line in resp.content:
                    if line.startswith(b":"):
                        stream.heartbeats.append(time.perf_counter())
                    elif line.startswith(b"event:"):
                        stream.events += 1
                stream.closed = time.perf_counter()
                stream.close_reason = "closed by the gateway"
                return
    except aiohttp.ClientError as exc:
        stream.closed = time.perf_counter()
        stream.close_reason = f"{type(exc).__name__}: {exc}"
        if stream.opened is None:
            answered()
    finally:
        if acquired:
            gate.release()


async def set_max_consumers(nc: NatsClient, limit: int) -> int:
    """RUN_EVENTS' consumer limit, raised to `limit` if given (the services provisioned the
    stream without one, so nats-server's default applies)."""
    js = nc.jetstream()
    info = await js.stream_info(RUN_EVENTS.name)
    if limit > 0:
        config = info.config
        config.max_consumers = limit
        info = await js.update_stream(config)
    return int(info.config.max_consumers or -1)


@dataclass(frozen=True)
class Followers:
    """Runs followed, as the server counts them: ordered consumers on RUN_EVENTS (how the
    gateway followed a run before commit 0aee425) plus subscriptions on the republished
    `agentbus.v1.runs.stored.<run_id>` subjects (how it follows one since, read from
    nats-server's monitoring endpoint)."""

    nc: NatsClient
    monitor_url: str

    async def count(self) -> int:
        info = await self.nc.jetstream().stream_info(RUN_EVENTS.name)
        consumers = int(info.state.consumer_count or 0)
        prefix = s.RUN_EVENTS_STORED_ALL.removesuffix(">")
        subscriptions, offset = 0, 0
        async with aiohttp.ClientSession() as http:
            while True:
                url = f"{self.monitor_url}/connz?subs=1&limit=1024&offset={offset}"
                async with http.get(url) as response:
                    page = await response.json()
                conns = page.get("connections") or []
                for conn in conns:
                    subscriptions += sum(
                        1 for x in conn.get("subscriptions_list") or [] if x.startswith(prefix)
                    )
                offset += len(conns)
                if not conns or offset >= page.get("total", 0):
                    return consumers + subscriptions


def followers_of(plat: Platform, nc: NatsClient) -> Followers:
    engine = plat.engines.nats
    if not isinstance(engine, NatsEngine):
        raise RuntimeError("the benchmark runs one NATS server, not a cluster")
    return Followers(nc, engine.monitor_url)


async def wait_consumers(
    followers: Followers, predicate: Callable[[int], bool], timeout: float
) -> tuple[int, float]:
    """Poll the count of followed runs until `predicate` holds; (count, seconds waited)."""
    started = time.perf_counter()
    count = await followers.count()
    while not predicate(count) and time.perf_counter() - started < timeout:
        await asyncio.sleep(0.5)
        count = await followers.count()
    return count, time.perf_counter() - started


async def steady_consumer_count(followers: Followers, timeout: float = 30.0) -> int:
    """RUN_EVENTS' consumer count once the consumers of streams that just ended (the chats
    before) are gone: zero, as nothing else consumes RUN_EVENTS here, or else unchanged for
    6 s."""
    deadline = time.perf_counter() + timeout
    counts = [await followers.count()]
    while counts[-1] and time.perf_counter() < deadline:
        if len(counts) >= 6 and len(set(counts[-6:])) == 1:
            break
        await asyncio.sleep(1.0)
        counts.append(await followers.count())
    return counts[-1]


class RssSampler:
    """Peak VmRSS of a process, sampled every `every` seconds while running."""

    def __init__(self, pid: int, every: float = 0.5) -> None:
        self.pid = pid
        self.every = every
        self.peak = 0.0
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            self.peak = max(self.peak, proc_status(self.pid).get("VmRSS", 0.0))
            await asyncio.sleep(self.every)

    def __enter__(self) -> RssSampler:
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    def __exit__(self, *_: object) -> None:
        if self._task is not None:
            self._task.cancel()


async def active_load(
    session: aiohttp.ClientSession,
    base: str,
    key: str,
    tap: BusTap,
    clients: int,
    seconds: float,
    timeout: float,
    assistant: str,
    words: int,
    think: float = 0.0,
) -> list[Chat]:
    """`clients` chat clients, each waiting `think` s between its chats, until `seconds`
    passed; every chat started is read to its end (or its timeout)."""
    chats: list[Chat] = []
    deadline = time.perf_counter() + seconds

    async def client(i: int) -> None:
        if think > 0:  # spread the clients' starts over one think time
            await asyncio.sleep(think * i / clients)
        while time.perf_counter() < deadline:
            chat = await gateway_chat(session, base, key, assistant, tap, timeout, words)
            chats.append(chat)
            if chat.http_status == 429:
                await asyncio.sleep(0.5)
            if think > 0:
                await asyncio.sleep(think)

    await asyncio.gather(*(client(i) for i in range(clients)))
    return chats


async def active_phase(
    session: aiohttp.ClientSession,
    base: str,
    key: str,
    tap: BusTap,
    args: argparse.Namespace,
    gateway_pid: int,
    meter: CpuMeter,
    label: str,
) -> dict[str, Any]:
    meter.start()
    started = time.perf_counter()
    with RssSampler(gateway_pid) as rss:
        chats = await active_load(
            session,
            base,
            key,
            tap,
            args.active,
            args.active_seconds,
            args.timeout,
            args.active_assistant,
            args.active_words,
            args.think,
        )
    wall = time.perf_counter() - started
    ok = sum(1 for c in chats if c.ok)
    res = {
        **chat_report(chats),
        "wall_s": wall,
        "chats_s": ok / wall if wall else 0.0,
        "cpu_s": meter.stop(),
        "gateway_rss_peak_mib": rss.peak,
        "loadavg": os.getloadavg(),
    }
    print(
        f"  active {label}: {ok}/{len(chats)} chats ok in {wall:.1f}s"
        f" ({res['chats_s']:.1f}/s), failures {res['failures']},"
        f" delivery p50 {res['delivery'].get('p50_ms', float('nan')):.2f} ms"
        f" p99 {res['delivery'].get('p99_ms', float('nan')):.2f} ms,"
        f" gateway cpu {res['cpu_s'].get('gateway', 0.0):.1f}s"
    )
    return res


def _gaps(stream: IdleStream, until: float) -> list[float]:
    """Seconds from its opening to the first heartbeat and between heartbeats; the time since
    the last one counts only once it is overdue (a heartbeat that never came)."""
    if stream.opened is None:
        return []
    marks = [stream.opened, *stream.heartbeats]
    gaps = [b - a for a, b in itertools.pairwise(marks)]
    if until - marks[-1] > HEARTBEAT_S:
        gaps.append(until - marks[-1])
    return gaps


async def open_idle(
    plat: Platform,
    nc: NatsClient,
    session: aiohttp.ClientSession,
    base: str,
    key: str,
    args: argparse.Namespace,
    consumers_before: int,
    meter: CpuMeter,
) -> tuple[list[IdleStream], list[asyncio.Task[None]], dict[str, Any]]:
    """`args.idle` streams of new runs that stay open, held by tasks until cancelled."""
    # Runs that stay open: accepted by the gateway's store, never submitted.
    pool = await asyncpg.create_pool(plat.engines.postgres.url, min_size=1, max_size=4)
    try:
        store = GatewayStore(pool)
        streams = [IdleStream(new_id()) for _ in range(args.idle)]
        thread_id = new_id()
        await store.create_thread(TENANT, thread_id, "bench idle streams", {})
        for st in streams:
            await store.create_run(TENANT, st.run_id, thread_id, "agent", {})
    finally:
        await pool.close()

    gate = asyncio.Semaphore(args.open_concurrency)
    n_answered = 0
    all_answered = asyncio.Event()

    def on_answer() -> None:
        nonlocal n_answered
        n_answered += 1
        if n_answered % 500 == 0:
            print(f"    {n_answered} streams answered")
        if n_answered >= len(streams):
            all_answered.set()

    started = time.perf_counter()
    meter.start()
    tasks = [
        asyncio.create_task(hold_idle(session, base, key, st, gate, on_answer)) for st in streams
    ]
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(all_answered.wait(), args.timeout * 4)
    answered_s = time.perf_counter() - started
    ok_streams = sum(1 for st in streams if st.status == 200)
    followers = followers_of(plat, nc)
    count, _ = await wait_consumers(
        followers, lambda c: c >= consumers_before + ok_streams, args.timeout
    )
    return (
        streams,
        tasks,
        {
            "ok": ok_streams,
            "answered_s": answered_s,
            "open_s": time.perf_counter() - started,
            "consumers": count,
            "cpu_s": meter.stop(),
        },
    )


async def close_idle(
    followers: Followers, tasks: list[asyncio.Task[None]], consumers_before: int, settle: float
) -> tuple[int, float | None]:
    """Close the streams; (RUN_EVENTS consumers left, seconds until they were all gone)."""
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    closed_at = time.perf_counter()
    count, _ = await wait_consumers(followers, lambda c: c <= consumers_before, 60.0)
    released = time.perf_counter() - closed_at if count <= consumers_before else None
    await asyncio.sleep(settle)
    return count, released


def tcp_peers(pid: int | None, ports: dict[int, str]) -> dict[str, int]:
    """Open TCP connections of a process by peer (named ports; anything else is "other")."""
    import psutil

    out: dict[str, int] = {}
    if pid is None:
        return out
    with contextlib.suppress(psutil.Error):
        for conn in psutil.Process(pid).net_connections("tcp"):
            if conn.raddr:
                name = ports.get(conn.raddr.port, "other")
                out[name] = out.get(name, 0) + 1
    return out


async def measure_streams(
    plat: Platform,
    nc: NatsClient,
    session: aiohttp.ClientSession,
    base: str,
    key: str,
    tap: BusTap,
    args: argparse.Namespace,
    gateway_pid: int,
    nats_pid: int | None,
    meter: CpuMeter,
) -> dict[str, Any]:
    res: dict[str, Any] = {
        "idle": args.idle,
        "active": args.active,
        "active_assistant": args.active_assistant,
        "active_words": args.active_words if args.active_assistant == "echo" else None,
        "think": args.think,
    }
    # Baseline in the same run: the active load with no idle stream held.
    if args.active:
        res["active_alone"] = await active_phase(
            session, base, key, tap, args, gateway_pid, meter, "alone"
        )
    followers = followers_of(plat, nc)
    consumers_before = await steady_consumer_count(followers)
    ports = {
        urlsplit(plat.engines.nats.url).port or 0: "nats",
        urlsplit(plat.engines.postgres.url).port or 0: "postgres",
    }
    res["before"] = {
        "gateway_tcp_peers": tcp_peers(gateway_pid, ports),
        "gateway": proc_status(gateway_pid),
        "nats": proc_status(nats_pid),
        "consumers": consumers_before,
        "loadavg": os.getloadavg(),
    }
    print(f"  before: gateway {res['before']['gateway']}, consumers {consumers_before}")

    streams, tasks, opening = await open_idle(
        plat, nc, session, base, key, args, consumers_before, meter
    )
    ok_streams, open_s, count, open_cpu, answered_s = (
        opening["ok"],
        opening["open_s"],
        opening["consumers"],
        opening["cpu_s"],
        opening["answered_s"],
    )
    statuses: dict[str, int] = {}
    for st in streams:
        statuses[str(st.status)] = statuses.get(str(st.status), 0) + 1
    res["open"] = {
        "answered_s": answered_s,
        "refused_429": sum(st.refused for st in streams),
        "streams_refused_at_least_once": sum(1 for st in streams if st.refused),
        "all_subscribed_s": open_s,
        "statuses": statuses,
        "consumers": count,
        "streams_per_s": ok_streams / open_s if open_s else 0.0,
        "cpu_s": open_cpu,
    }
    print(
        f"  {ok_streams}/{len(streams)} idle streams open in {open_s:.1f}s"
        f" (statuses {statuses}); RUN_EVENTS consumers {count}"
    )
    await asyncio.sleep(args.settle)
    idle_at = {"gateway": proc_status(gateway_pid), "nats": proc_status(nats_pid)}
    res["idle_open"] = idle_at

    # Idle streams alone: what holding them costs the gateway (heartbeats included).
    meter.start()
    hold_started = time.perf_counter()
    await asyncio.sleep(args.idle_hold)
    res["idle_hold"] = {"seconds": time.perf_counter() - hold_started, "cpu_s": meter.stop()}
    res["idle_hold"]["loadavg"] = os.getloadavg()
    print(f"  held idle for {args.idle_hold:.0f}s: cpu {res['idle_hold']['cpu_s']}")

    # The same active load again, now next to the idle streams.
    if args.active:
        res["active_load"] = await active_phase(
            session, base, key, tap, args, gateway_pid, meter, "with idle streams"
        )
    after_active = {"gateway": proc_status(gateway_pid), "nats": proc_status(nats_pid)}
    res["after_active"] = after_active

    # Every idle stream must still be open and have had its heartbeats.
    now = time.perf_counter()
    still_open = [st for st in streams if st.status == 200 and st.closed is None]
    gaps = [g for st in still_open for g in _gaps(st, now)]
    beats = [len(st.heartbeats) for st in still_open]
    held = [now - st.opened for st in still_open if st.opened is not None]
    res["idle_check"] = {
        "still_open": len(still_open),
        "closed_early": {
            reason: sum(1 for st in streams if st.close_reason == reason)
            for reason in {st.close_reason for st in streams if st.close_reason}
        },
        "held_s_min": min(held) if held else 0.0,
        "heartbeats_min": min(beats) if beats else 0,
        "heartbeats_median": float(np.median(beats)) if beats else 0.0,
        "heartbeat_gap_s": {
            "p50": float(np.percentile(gaps, 50)) if gaps else 0.0,
            "p99": float(np.percentile(gaps, 99)) if gaps else 0.0,
            "max": max(gaps) if gaps else 0.0,
        },
        "unexpected_events": sum(st.events for st in streams),
    }
    print(f"  idle check: {res['idle_check']}")

    # Close them all: the gateway must let go of every consumer and file.
    count, released = await close_idle(followers, tasks, consumers_before, args.settle)
    res["after_close"] = {
        "gateway": proc_status(gateway_pid),
        "nats": proc_status(nats_pid),
        "consumers": count,
        "consumers_released_s": released,
        "gateway_tcp_peers": tcp_peers(gateway_pid, ports),
    }
    print(f"  after close: {res['after_close']}")

    # A second round of the same streams: memory that Python kept for reuse is reused; a leak
    # grows again.
    if args.second_round:
        _, tasks, opening = await open_idle(
            plat, nc, session, base, key, args, consumers_before, meter
        )
        second_open = {"gateway": proc_status(gateway_pid), "nats": proc_status(nats_pid)}
        count, released = await close_idle(followers, tasks, consumers_before, args.settle)
        res["second_round"] = {
            "ok": opening["ok"],
            "open": second_open,
            "after_close": {
                "gateway": proc_status(gateway_pid),
                "nats": proc_status(nats_pid),
                "consumers": count,
                "consumers_released_s": released,
            },
        }
        print(f"  second round: {res['second_round']}")
    return res


# -- the benchmark ---------------------------------------------------------------------------


async def wait_http(base: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as probe:
        while time.monotonic() < deadline:
            with contextlib.suppress(aiohttp.ClientError):
                async with probe.get(f"{base}/healthz") as resp:
                    if resp.status == 200:
                        return
            await asyncio.sleep(0.2)
    raise TimeoutError(f"the gateway at {base} did not answer /healthz")


class ServiceDied(RuntimeError):
    pass


async def watch_services(plat: Platform, main: asyncio.Task[Any] | None) -> None:
    """Stop the benchmark at once when a service process exits, instead of letting every
    remaining chat wait for its timeout."""
    while True:
        await asyncio.sleep(1.0)
        for name in ("orchestrator", "gateway"):
            code = plat.procs[name].poll()
            if code is not None:
                print(f"{name} exited with code {code}: {plat.last_output(name)}")
                if main is not None:
                    main.cancel(f"{name} exited with code {code}")
                return


async def run_parts(
    plat: Platform,
    nc: NatsClient,
    args: argparse.Namespace,
    base: str,
    key: str,
    gateway_pid: int,
    nats_pid: int | None,
    meter: CpuMeter,
    results: dict[str, Any],
) -> None:
    tap = BusTap(nc)
    await tap.start()
    connector = aiohttp.TCPConnector(limit=0, limit_per_host=0)
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=60, sock_read=None)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        if args.ttft_runs:
            print("time to first token, one run at a time")
            for assistant in args.assistants:
                paths: dict[str, Callable[[], Awaitable[Chat]]] = {
                    "bus": partial(bus_chat, nc, tap, assistant, args.timeout),
                    "gateway": partial(
                        gateway_chat, session, base, key, assistant, tap, args.timeout
                    ),
                }
                async with contextlib.AsyncExitStack() as stack:
                    if assistant == "echo":
                        baseline = await stack.enter_async_context(
                            Baseline(plat.engines.postgres.url, 4)
                        )
                        paths["in-process"] = partial(in_process_chat, baseline)
                    results["ttft"][assistant] = await measure_ttft(assistant, paths, args, meter)
        if args.idle or args.active:
            print(f"streams: {args.idle} idle + {args.active} active")
            results["streams"] = await measure_streams(
                plat, nc, session, base, key, tap, args, gateway_pid, nats_pid, meter
            )


async def measure(plat: Platform, args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {"ttft": {}, "streams": None}
    nc = await nats.connect(plat.engines.nats.url)
    try:
        async with (
            service(plat, "orchestrator", "process"),
            service(plat, "gateway", "process"),
        ):
            base = plat.gateway_url
            await wait_http(base, 60)
            key = (plat.data_dir / "dev-api-key").read_text().strip()
            gateway_pid = plat.procs["gateway"].pid
            roots = cpu_roots(plat, plat.procs["orchestrator"].pid)
            roots["gateway"] = gateway_pid
            meter = CpuMeter(roots)
            nats_pid = roots.get("nats")
            results["gateway_file_limit"] = _file_limit(gateway_pid)
            results["run_events_max_consumers"] = await set_max_consumers(nc, args.max_consumers)
            watchdog = asyncio.create_task(watch_services(plat, asyncio.current_task()))
            try:
                await run_parts(plat, nc, args, base, key, gateway_pid, nats_pid, meter, results)
            except asyncio.CancelledError:
                if watchdog.done():
                    raise ServiceDied("a service exited during the benchmark (see above)") from None
                raise
            finally:
                watchdog.cancel()
    finally:
        await nc.close()
    return results


def _file_limit(pid: int) -> str:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
            if line.startswith("Max open files"):
                return " ".join(line.split()[3:5])
    return "?"


# -- report ----------------------------------------------------------------------------------


def _p(stats: dict[str, Any], key: str) -> float:
    return float(stats.get(key, float("nan")))


def ttft_table(res: dict[str, Any]) -> str:
    rows = []
    for assistant, paths in res["ttft"].items():
        bus = paths.get("bus", {}).get("ttft", {})
        for name, r in paths.items():
            ratio = (
                _p(r["ttft"], "p50_ms") / _p(bus, "p50_ms") if _p(bus, "p50_ms") else float("nan")
            )
            rows.append(
                [
                    assistant,
                    name,
                    f"{r['ok']}/{r['runs']}",
                    _p(r["ttft"], "p50_ms"),
                    _p(r["ttft"], "p95_ms"),
                    _p(r["end"], "p50_ms"),
                    _p(r["end"], "p95_ms"),
                    f"{_p(r['ttft'], 'p50_ms') - _p(bus, 'p50_ms'):+.2f}",
                    f"{ratio:.2f}x",
                ]
            )
    return markdown_table(
        [
            "assistant",
            "path",
            "runs ok",
            "TTFT p50 ms",
            "TTFT p95 ms",
            "end p50 ms",
            "end p95 ms",
            "TTFT p50 vs bus",
            "TTFT p50 / bus",
        ],
        rows,
    )


def split_table(res: dict[str, Any]) -> str:
    rows = []
    for assistant, paths in res["ttft"].items():
        g = paths.get("gateway")
        if g is None:
            continue
        rows.append(
            [
                assistant,
                _p(g["ttft_to_bus"], "p50_ms"),
                _p(g["ttft_to_bus"], "p95_ms"),
                _p(g["first_token_bus_to_sse"], "p50_ms"),
                _p(g["first_token_bus_to_sse"], "p95_ms"),
                _p(g["delivery"], "p50_ms"),
                _p(g["delivery"], "p99_ms"),
                *(
                    g["cpu_ms_per_run"].get(k, 0.0)
                    for k in ("gateway", "orchestrator", "nats", "postgres", "bench")
                ),
            ]
        )
        b = paths.get("bus")
        if b is not None:
            rows.append(
                [
                    f"{assistant} (bus path)",
                    _p(b["ttft"], "p50_ms"),
                    _p(b["ttft"], "p95_ms"),
                    "-",
                    "-",
                    "-",
                    "-",
                    *(
                        b["cpu_ms_per_run"].get(k, 0.0)
                        for k in ("gateway", "orchestrator", "nats", "postgres", "bench")
                    ),
                ]
            )
    return markdown_table(
        [
            "gateway path",
            "request to token on bus p50",
            "p95",
            "token bus to SSE p50",
            "p95",
            "any event bus to SSE p50",
            "p99",
            "CPU ms/run gateway",
            "orchestrator",
            "nats",
            "postgres",
            "client",
        ],
        rows,
    )


def _mib(d: dict[str, float], key: str = "VmRSS") -> float:
    return float(d.get(key, float("nan")))


def active_table(st: dict[str, Any], idle: int) -> str:
    cores = os.cpu_count() or 1
    rows = []
    for key, label in (("active_alone", "alone"), ("active_load", f"with {idle} idle")):
        a = st.get(key)
        if a is None:
            continue
        cpu = a["cpu_s"]
        rows.append(
            [
                label,
                f"{a['ok']}/{a['runs']}",
                a["chats_s"],
                _p(a["ttft"], "p50_ms"),
                _p(a["ttft"], "p95_ms"),
                _p(a["end"], "p50_ms"),
                _p(a["delivery"], "p50_ms"),
                _p(a["delivery"], "p95_ms"),
                _p(a["delivery"], "p99_ms"),
                1e3 * cpu.get("gateway", 0.0) / max(1, a["ok"]),
                f"{100 * cpu.get('gateway', 0.0) / a['wall_s']:.0f}%",
                a["gateway_rss_peak_mib"],
                f"{100 * cpu.get('other', 0.0) / (a['wall_s'] * cores):.0f}%",
            ]
        )
    return markdown_table(
        [
            "active chats",
            "ok",
            "chats/s",
            "TTFT p50 ms",
            "TTFT p95 ms",
            "end p50 ms",
            "delivery p50 ms",
            "p95",
            "p99",
            "gateway CPU ms/chat",
            "gateway, % of a core",
            "gateway RSS peak MiB",
            "other load",
        ],
        rows,
    )


def streams_report(st: dict[str, Any]) -> str:
    before, idle, active, closed = (
        st["before"],
        st["idle_open"],
        st["after_active"],
        st["after_close"],
    )
    second = st.get("second_round")
    n = max(1, st["open"]["statuses"].get("200", 0))
    g0, g1 = _mib(before["gateway"]), _mib(idle["gateway"])
    n0, n1 = _mib(before["nats"]), _mib(idle["nats"])

    def row(label: str, proc: str, key: str, per_stream: object) -> list[object]:
        def value(d: dict[str, Any]) -> object:
            v = d[proc].get(key, float("nan"))
            return int(v) if key == "fds" else v

        cells = [label, value(before), value(idle), value(active), value(closed)]
        if second is not None:
            cells += [value(second["open"]), value(second["after_close"])]
        return [*cells, per_stream]

    headers = ["process", "before", f"{n} idle open", "after active", "after close"]
    if second is not None:
        headers += ["open again", "close again"]
    consumers = ["RUN_EVENTS consumers", before["consumers"], st["open"]["consumers"], "-"]
    consumers += [closed["consumers"]]
    if second is not None:
        consumers += ["-", second["after_close"]["consumers"]]
    mem = markdown_table(
        [*headers, "per stream KiB"],
        [
            row("gateway RSS MiB", "gateway", "VmRSS", (g1 - g0) * 1024 / n),
            row("gateway open files", "gateway", "fds", "-"),
            row("nats-server RSS MiB", "nats", "VmRSS", (n1 - n0) * 1024 / n),
            [*consumers, "-"],
        ],
    )
    hold = st["idle_hold"]
    hold_cpu = hold["cpu_s"]
    check = st["idle_check"]
    lines = [
        mem,
        "",
        f"Opening: {n} streams in {st['open']['all_subscribed_s']:.1f} s "
        f"({st['open']['streams_per_s']:.0f}/s, final statuses {st['open']['statuses']}; "
        f"429 answers {st['open']['refused_429']}, to "
        f"{st['open']['streams_refused_at_least_once']} streams, each retried); gateway CPU "
        f"{st['open']['cpu_s'].get('gateway', 0.0) * 1e3 / n:.2f} ms per stream opened.",
        f"Idle hold {hold['seconds']:.0f} s: gateway CPU "
        f"{100 * hold_cpu.get('gateway', 0.0) / hold['seconds']:.1f}% of one core, nats-server "
        f"{100 * hold_cpu.get('nats', 0.0) / hold['seconds']:.1f}%, other processes "
        f"{100 * hold_cpu.get('other', 0.0) / (hold['seconds'] * (os.cpu_count() or 1)):.0f}% "
        "of the machine.",
        *(
            [
                f"Active: {st['active']} `{st['active_assistant']}` chat clients in a closed "
                f"loop (think time {st.get('think', 0.0):g} s), alone and then next to the {n} "
                "idle streams:",
                "",
                active_table(st, n),
                "",
            ]
            if st["active"]
            else []
        ),
        f"Idle streams still open at the end: {check['still_open']}/{n} (held >= "
        f"{check['held_s_min']:.0f} s; closed early: {check['closed_early'] or 'none'}); "
        f"heartbeats per stream min {check['heartbeats_min']}, median "
        f"{check['heartbeats_median']:.0f}; gap between heartbeats p50 "
        f"{check['heartbeat_gap_s']['p50']:.1f} s, p99 {check['heartbeat_gap_s']['p99']:.1f} s, "
        f"max {check['heartbeat_gap_s']['max']:.1f} s.",
        f"Gateway TCP connections by peer: before {before.get('gateway_tcp_peers')}, after "
        f"close {closed.get('gateway_tcp_peers')}.",
    ]
    return "\n".join(lines)


def report(res: dict[str, Any]) -> str:
    parts = []
    if res["ttft"]:
        parts += [
            "Time to first token, one run at a time (ms). Ratio and difference against the bus "
            "path (the orchestrator alone):",
            ttft_table(res),
            "Where the gateway path's time goes (ms), and CPU per run:",
            split_table(res),
        ]
    if res["streams"]:
        parts += ["Streams held by one gateway process:", streams_report(res["streams"])]
    parts.append(
        f"load average at start {res['machine']['load_average_at_start']}, before streams "
        f"{res['loadavg_before_streams']}, at end {res['loadavg_after']}"
    )
    return "\n\n".join(parts)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.gateway_streams", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--idle", type=int, default=2000, help="idle streams held open")
    parser.add_argument(
        "--active", type=int, default=200, help="chat streams in flight during the active phase"
    )
    parser.add_argument(
        "--active-seconds", type=float, default=30.0, help="how long the active phase runs"
    )
    parser.add_argument(
        "--active-assistant",
        choices=["echo", "agent"],
        default="echo",
        help="assistant of the active chats (echo streams tokens as fast as the orchestrator "
        "can publish them; agent is the local model, bounded by the orchestrator)",
    )
    parser.add_argument("--active-words", type=int, default=32, help="tokens per active echo chat")
    parser.add_argument(
        "--think",
        type=float,
        default=0.0,
        help="seconds each active client waits between its chats (0: a closed loop at full "
        "speed, which saturates this machine; e.g. 10 for a sustainable rate)",
    )
    parser.add_argument(
        "--max-consumers",
        type=int,
        default=10_000,
        help="raise RUN_EVENTS' consumer limit to this (each open stream is one JetStream "
        "consumer; nats-server 2.15 allows 1000 per stream by default); 0 keeps the default",
    )
    parser.add_argument(
        "--idle-hold",
        type=float,
        default=20.0,
        help="seconds the idle streams are held alone before the active phase (> 15 s: one "
        "heartbeat round)",
    )
    parser.add_argument(
        "--second-round",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="open and close the idle streams a second time (leak check)",
    )
    parser.add_argument(
        "--open-concurrency", type=int, default=64, help="idle streams being opened at once"
    )
    parser.add_argument(
        "--settle", type=float, default=3.0, help="seconds to wait before reading memory"
    )
    parser.add_argument(
        "--ttft-runs", type=int, default=100, help="measured runs per path and assistant (0: skip)"
    )
    parser.add_argument("--warmup", type=int, default=10, help="uncounted runs per path first")
    parser.add_argument("--rounds", type=int, default=4, help="interleaved segments per path")
    parser.add_argument(
        "--assistants",
        type=lambda t: [a for a in t.split(",") if a],
        default=["agent", "echo"],
        help="assistants for the TTFT comparison (agent: the local model; echo: instant)",
    )
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per chat at most")
    parser.add_argument(
        "--json", type=Path, default=None, metavar="PATH", help="also write results as JSON"
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the temporary engine data and logs"
    )
    args = parser.parse_args(argv)
    if min(args.idle, args.active, args.ttft_runs, args.warmup) < 0:
        parser.error("counts must not be negative")
    if args.rounds < 1 or args.open_concurrency < 1 or args.timeout <= 0:
        parser.error("--rounds, --open-concurrency and --timeout must be positive")
    if args.active_words < 1 or args.active_seconds <= 0:
        parser.error("--active-words and --active-seconds must be positive")
    if min(args.think, args.idle_hold, args.settle, args.max_consumers) < 0:
        parser.error("--think, --idle-hold, --settle and --max-consumers must not be negative")
    unknown = set(args.assistants) - {"agent", "echo"}
    if unknown:
        parser.error(f"unknown assistants {sorted(unknown)}: choose from agent, echo")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    json_path = args.json.resolve() if args.json else None
    isolate_environment()
    limit = raise_file_limit()
    info = machine_info()
    print(f"machine: {info}; open files limit {limit}")
    started = time.perf_counter()
    env = {
        "AGENTBUS_RATE_LIMITS": json.dumps(RATE_LIMITS),
        # One tenant holds every stream here; the default allows 1,000 per gateway.
        "AGENTBUS_MAX_STREAMS_PER_TENANT": str(args.idle + args.active + 100),
    }
    with bench_root(args.keep) as root, engines(root, extra_env=env) as plat:
        plat.gateway_port = free_port()
        results = asyncio.run(measure(plat, args))
    results.update(
        {
            "machine": info,
            "command": " ".join(["python -m bench.gateway_streams", *(argv or sys.argv[1:])]),
            "file_limit": limit,
            "loadavg_before_streams": (results.get("streams") or {})
            .get("before", {})
            .get("loadavg"),
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
