"""Soak: the whole platform under steady load for a long time (30 minutes by default), watched
for leaks and for latency that drifts.

Everything runs as `agentbus up` runs it (`Platform.start()`: embedded NATS, PostgreSQL, the graph
server and chDB on free 127.0.0.1 ports, every service as its own supervised process), with rate
limits raised so they never refuse and the dev tenant allowed every run slot of the orchestrator
(`AGENTBUS_MAX_RUNS_PER_TENANT=32`: all clients are that one tenant). Load, all bounded in time
and stopped by the benchmark:
- `--clients` chat clients (default 200), each a closed loop: `POST /api/v1/chat/stream` with the
  `echo` assistant on a new thread, the SSE read to `stream_end`, then `--think` seconds (default
  1 s, jittered) before the next chat. Every fourth chat goes through the OpenAI adapter
  (`/v1/chat/completions`, streamed) instead, so the adapters' paths soak too.
- `--uploaders` clients (default 4) each uploading a small Markdown document (unique name and
  text) every `--upload-every` seconds (default 15); at the end every one must be `indexed`.
- Domain events (deployments and commits of the dev tenant) published to JetStream at
  `--events-per-second` (default 50), what other systems feed the analytics service.

Every `--window` seconds (default 30) one line: chats started / completed / failed, TTFT and total
p50/p99 of the chats that completed in the window, memory (PSS, with children: PostgreSQL's
backends) and open files of every process, the JetStream consumers on
RUN_EVENTS and the analytics consumer's backlog.

At the end the load stops and, after `--settle` seconds, the benchmark checks what a leak or a
loss would show:
- lost runs: every chat whose run was accepted (a run id in the response) has exactly one `end`
  event on the bus (a core subscription in this process sees them all) and each client saw its
  `stream_end`; duplicates: no run has two `end` events;
- domain events: the analytics consumer has no backlog and nothing unacknowledged;
- consumers: RUN_EVENTS has no more consumers than before the load (each SSE stream's consumer is
  gone with its stream);
- memory: PSS growth per process from the end of the first quarter (warm) to the end, as MiB and
  as a slope in MiB per 10 minutes; a process whose PSS keeps rising through the second half is
  flagged.

Run: `.venv/bin/python -m bench.soak [--minutes 30] [--clients 200] [--think 1.0]
[--events-per-second 50] [--uploaders 4] [--upload-every 15] [--window 30] [--json out.json]`.
The 2-core machine runs the benchmark client and the platform together: the client's CPU is part
of the load.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import resource
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python bench/soak.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import aiohttp
import nats
import psutil
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from agentbus.contracts import DomainEvent
from agentbus.contracts import subjects as s
from agentbus.contracts.streams import ANALYTICS_DOMAIN_EVENTS
from agentbus.runtime.engines import free_port
from agentbus.runtime.platform import Platform
from bench.common import (
    bench_root,
    isolate_environment,
    machine_info,
    markdown_table,
    summarize,
    write_json,
)

RATE_LIMITS = {r: "1000000/second" for r in ("chat", "stream", "register", "login", "upload")}
MESSAGE = "one two three four five six seven eight"
TENANT = "dev"
EVENTS_PREFIX = s.RUN_EVENTS_ALL.removesuffix(">")


@dataclass
class Window:
    started: int = 0
    completed: int = 0
    failed: int = 0
    ttft_s: list[float] = field(default_factory=list)
    total_s: list[float] = field(default_factory=list)


@dataclass
class Ledger:
    """What the clients and the bus saw, for the loss and duplicate checks at the end."""

    window: Window = field(default_factory=Window)
    accepted: set[str] = field(default_factory=set)
    stream_ended: set[str] = field(default_factory=set)
    ends: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    events_published: int = 0
    uploaded: set[str] = field(default_factory=set)
    upload_failed: int = 0

    def take_window(self) -> Window:
        w, self.window = self.window, Window()
        return w


async def watch_ends(nc: NatsClient, ledger: Ledger) -> None:
    async def on_event(msg: Msg) -> None:
        # Only the end event is parsed: the tap must keep up with hundreds of streams.
        if b'"type":"end"' in msg.data or b'"type": "end"' in msg.data:
            ledger.ends[msg.subject[len(EVENTS_PREFIX) :]] += 1

    await nc.subscribe(
        s.RUN_EVENTS_ALL, cb=on_event, pending_msgs_limit=2_000_000, pending_bytes_limit=1 << 30
    )
    await nc.flush()


def chat_request(openai: bool) -> tuple[str, dict[str, Any]]:
    if openai:
        return "/v1/chat/completions", {
            "model": "echo",
            "stream": True,
            "messages": [{"role": "user", "content": MESSAGE}],
        }
    return "/api/v1/chat/stream", {"message": MESSAGE, "assistant_id": "echo"}


async def one_chat(http: aiohttp.ClientSession, base: str, openai: bool, ledger: Ledger) -> None:
    url, body = chat_request(openai)
    ledger.window.started += 1
    t0 = time.perf_counter()
    first: float | None = None
    ended = False
    run_id = ""
    try:
        async with http.post(base + url, json=body) as resp:
            if resp.status != 200:
                ledger.errors[f"http {resp.status}"] += 1
                ledger.window.failed += 1
                return
            if openai:
                run_id = resp.headers.get("x-agentbus-run-id", "")
            else:
                run_id = resp.headers.get("content-location", "").rstrip("/").split("/")[-2]
            if run_id:
                ledger.accepted.add(run_id)
            event = ""
            async for raw in resp.content:
                line = raw.rstrip(b"\r\n")
                if line.startswith(b"event:"):
                    event = line[6:].strip().decode()
                    continue
                if not line.startswith(b"data:"):
                    continue
                data = line[5:].strip()
                if openai:
                    if data == b"[DONE]":
                        ended = True
                        break
                    if b'"error"' in data:
                        ledger.errors[f"openai error: {data[:120].decode(errors='replace')}"] += 1
                    if first is None and b'"content":"' in data.replace(b": ", b":"):
                        first = time.perf_counter()
                elif event == "token" and first is None:
                    first = time.perf_counter()
                elif event == "error":
                    ledger.errors[f"native error: {json.loads(data).get('message', '')[:80]}"] += 1
                elif event == "stream_end":
                    ended = True
                    status = json.loads(data).get("status")
                    if status != "success":
                        ledger.errors[f"native run {status}"] += 1
                    break
    except (aiohttp.ClientError, TimeoutError) as exc:
        ledger.errors[type(exc).__name__] += 1
    done = time.perf_counter()
    if ended and first is not None:
        if run_id:
            ledger.stream_ended.add(run_id)
        ledger.window.completed += 1
        ledger.window.ttft_s.append(first - t0)
        ledger.window.total_s.append(done - t0)
    else:
        ledger.window.failed += 1
        if ended:
            ledger.errors[f"{'openai' if openai else 'native'} stream without a token"] += 1


async def client(
    base: str, key: str, think: float, stop_at: float, ledger: Ledger, index: int
) -> None:
    rng = random.Random(index)
    timeout = aiohttp.ClientTimeout(total=120)
    headers = {"x-api-key": key}
    async with aiohttp.ClientSession(headers=headers, timeout=timeout) as http:
        await asyncio.sleep(rng.uniform(0, max(think, 1.0)))  # spread the starts
        n = index
        while time.monotonic() < stop_at:
            await one_chat(http, base, n % 4 == 3, ledger)
            n += 1
            await asyncio.sleep(think * rng.uniform(0.5, 1.5))


async def publisher(nc: NatsClient, per_second: float, stop_at: float, ledger: Ledger) -> None:
    if per_second <= 0:
        return
    js = nc.jetstream()
    i = 0
    tick = 0.1
    per_tick = max(1, round(per_second * tick))
    while time.monotonic() < stop_at:
        started = time.monotonic()
        batch = []
        for _ in range(per_tick):
            ts = datetime.now(UTC)
            if i % 5 == 4:
                event = DomainEvent(
                    tenant_id=TENANT,
                    source="ci",
                    type="deployment",
                    ts=ts,
                    data={"service": f"svc{i % 7}", "commits": [f"soak{i - 1:010x}"]},
                )
            else:
                event = DomainEvent(
                    tenant_id=TENANT,
                    source="git",
                    type="commit",
                    ts=ts,
                    data={"sha": f"soak{i:010x}", "service": f"svc{i % 7}"},
                )
            subject = s.domain_event(event.tenant_id, event.source, event.type)
            batch.append(js.publish(subject, event.model_dump_json().encode()))
            i += 1
        await asyncio.gather(*batch)
        ledger.events_published += len(batch)
        await asyncio.sleep(max(0.0, tick - (time.monotonic() - started)))


async def uploader(
    base: str, key: str, every: float, stop_at: float, ledger: Ledger, index: int
) -> None:
    """Uploads a small Markdown document (unique name and text) every `every` seconds."""
    if every <= 0:
        return
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(headers={"x-api-key": key}, timeout=timeout) as http:
        n = 0
        while time.monotonic() < stop_at:
            name = f"soak-{index}-{n}.md"
            text = f"# Soak note {index}.{n}\n\n" + " ".join(
                f"service svc{(index + k) % 7} deployed build {n}-{k}." for k in range(40)
            )
            form = aiohttp.FormData()
            form.add_field("file", text.encode(), filename=name, content_type="text/markdown")
            try:
                async with http.post(f"{base}/api/v1/documents", data=form) as resp:
                    if resp.status == 202:
                        ledger.uploaded.add((await resp.json())["document_id"])
                    else:
                        ledger.upload_failed += 1
                        ledger.errors[f"upload http {resp.status}"] += 1
            except (aiohttp.ClientError, TimeoutError) as exc:
                ledger.upload_failed += 1
                ledger.errors[f"upload {type(exc).__name__}: {str(exc)[:80]}"] += 1
            n += 1
            await asyncio.sleep(every)


async def not_indexed(base: str, key: str, ids: set[str]) -> list[str]:
    """The uploaded documents whose status is not `indexed` (yet)."""
    out: list[str] = []
    async with aiohttp.ClientSession(headers={"x-api-key": key}) as http:
        for doc in sorted(ids):
            async with http.get(f"{base}/api/v1/documents/{doc}") as resp:
                status = (await resp.json()).get("status") if resp.status == 200 else resp.status
                if status != "indexed":
                    out.append(doc)
    return out


def process_sample(pids: dict[str, int]) -> dict[str, dict[str, float]]:
    """Memory (PSS, MiB) and open files of each named process with its children. PSS, not RSS:
    PostgreSQL's backends each map the shared buffers, so their RSS summed counts those pages
    once per backend (641 MiB of RSS was 100 MiB of PSS in one soak)."""
    out: dict[str, dict[str, float]] = {}
    for name, pid in pids.items():
        try:
            proc = psutil.Process(pid)
            family = [proc, *proc.children(recursive=True)]
            rss = 0
            files = 0
            for p in family:
                with contextlib.suppress(psutil.Error):
                    rss += p.memory_full_info().pss
                    files += p.num_fds()
            out[name] = {"pss_mib": round(rss / 2**20, 1), "fds": files}
        except psutil.Error:
            out[name] = {"pss_mib": 0.0, "fds": 0}
    return out


async def bus_sample(nc: NatsClient) -> dict[str, int]:
    js = nc.jetstream()
    out = {"run_events_consumers": -1, "analytics_pending": -1, "analytics_unacked": -1}
    with contextlib.suppress(Exception):
        info = await js.stream_info("RUN_EVENTS")
        out["run_events_consumers"] = info.state.consumer_count
    with contextlib.suppress(Exception):
        spec = ANALYTICS_DOMAIN_EVENTS
        cinfo = await js.consumer_info(spec.stream, spec.durable)
        out["analytics_pending"] = cinfo.num_pending
        out["analytics_unacked"] = cinfo.num_ack_pending
    return out


def ms(values: list[float], q: str) -> float:
    stats = summarize(values) if values else {}
    return round(stats.get(f"{q}_ms", 0.0), 1)


async def soak(plat: Platform, args: argparse.Namespace) -> dict[str, Any]:
    base = plat.gateway_url
    key = (plat.data_dir / "dev-api-key").read_text().strip()
    nc = await nats.connect(plat.engines.nats.url)
    ledger = Ledger()
    await watch_ends(nc, ledger)
    before = await bus_sample(nc)
    windows: list[dict[str, Any]] = []
    started = time.monotonic()
    stop_at = started + args.minutes * 60
    tasks = [
        asyncio.create_task(client(base, key, args.think, stop_at, ledger, i))
        for i in range(args.clients)
    ]
    tasks.append(asyncio.create_task(publisher(nc, args.events_per_second, stop_at, ledger)))
    tasks += [
        asyncio.create_task(uploader(base, key, args.upload_every, stop_at, ledger, i))
        for i in range(args.uploaders)
    ]
    try:
        while time.monotonic() < stop_at:
            await asyncio.sleep(min(args.window, max(0.0, stop_at - time.monotonic())))
            dead = [n for n, p in plat.procs.items() if p.poll() is not None]
            w = ledger.take_window()
            row = {
                "t_s": round(time.monotonic() - started),
                "load": round(psutil.getloadavg()[0], 1),
                "started": w.started,
                "completed": w.completed,
                "failed": w.failed,
                "ttft_p50_ms": ms(w.ttft_s, "p50"),
                "ttft_p99_ms": ms(w.ttft_s, "p99"),
                "total_p50_ms": ms(w.total_s, "p50"),
                "total_p99_ms": ms(w.total_s, "p99"),
                "processes": process_sample(plat.pids()),
                "bus": await bus_sample(nc),
                "exited": dead,
            }
            windows.append(row)
            rss = " ".join(f"{n}={v['pss_mib']:.0f}" for n, v in row["processes"].items())
            print(
                f"t={row['t_s']:>5}s load {row['load']:>4} chats {w.completed:>5} ok"
                f" {w.failed:>3} failed, TTFT p50/p99 {row['ttft_p50_ms']}/{row['ttft_p99_ms']}"
                f" ms, total p50/p99 {row['total_p50_ms']}/{row['total_p99_ms']} ms,"
                f" consumers {row['bus']['run_events_consumers']}, analytics backlog"
                f" {row['bus']['analytics_pending']}; PSS MiB {rss}",
                flush=True,
            )
    finally:
        if time.monotonic() < stop_at:  # interrupted (Ctrl-C): do not wait for the clients
            for task in tasks:
                task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    # Let the last runs finish and the analytics consumer drain before counting.
    deadline = time.monotonic() + args.settle
    while time.monotonic() < deadline:
        after = await bus_sample(nc)
        missing = ledger.accepted - set(ledger.ends)
        drained = after["analytics_pending"] == 0 and after["analytics_unacked"] == 0
        consumers_back = after["run_events_consumers"] <= before["run_events_consumers"]
        if not missing and drained and consumers_back:
            pending_docs = await not_indexed(base, key, ledger.uploaded)
            if not pending_docs:
                break
        await asyncio.sleep(1.0)
    after = await bus_sample(nc)
    await nc.close()
    res = verdict(ledger, before, after, windows)
    res["documents_uploaded"] = len(ledger.uploaded)
    res["documents_upload_failed"] = ledger.upload_failed
    res["documents_not_indexed"] = len(await not_indexed(base, key, ledger.uploaded))
    return res


def verdict(
    ledger: Ledger, before: dict[str, int], after: dict[str, int], windows: list[dict[str, Any]]
) -> dict[str, Any]:
    missing_end = sorted(ledger.accepted - set(ledger.ends))
    doubled = sorted(r for r, n in ledger.ends.items() if n > 1 and r in ledger.accepted)
    no_stream_end = sorted(ledger.accepted - ledger.stream_ended)
    memory: dict[str, dict[str, float]] = {}
    if len(windows) >= 4:
        warm = windows[len(windows) // 4 - 1]["processes"]
        half = windows[len(windows) // 2 - 1]["processes"]
        last = windows[-1]["processes"]
        minutes = (windows[-1]["t_s"] - windows[len(windows) // 4 - 1]["t_s"]) / 60
        series: dict[str, list[float]] = defaultdict(list)
        for w in windows[len(windows) // 2 - 1 :]:
            for name, v in w["processes"].items():
                series[name].append(v["pss_mib"])
        for name, v in last.items():
            growth = v["pss_mib"] - warm.get(name, v)["pss_mib"]
            second_half = v["pss_mib"] - half.get(name, v)["pss_mib"]
            values = series[name]
            # "Keeps rising": up by more than 5% through the second half, and never back down.
            rising = second_half > 0.05 * max(
                half.get(name, v)["pss_mib"], 1.0
            ) and values == sorted(values)
            memory[name] = {
                "warm_mib": warm.get(name, v)["pss_mib"],
                "end_mib": v["pss_mib"],
                "growth_mib": round(growth, 1),
                "mib_per_10min": round(growth / minutes * 10, 2) if minutes else 0.0,
                "fds_warm": warm.get(name, v)["fds"],
                "fds_end": v["fds"],
                "rising": rising,
            }
    completed = sum(w["completed"] for w in windows)
    failed = sum(w["failed"] for w in windows)
    return {
        "chats_completed": completed,
        "chats_failed": failed,
        "runs_accepted": len(ledger.accepted),
        "runs_without_end_event": len(missing_end),
        "runs_with_two_end_events": len(doubled),
        "runs_without_stream_end_at_client": len(no_stream_end),
        "domain_events_published": ledger.events_published,
        "bus_before": before,
        "bus_after": after,
        "errors": dict(ledger.errors),
        "memory": memory,
        "windows": windows,
        "examples": {"missing_end": missing_end[:5], "doubled": doubled[:5]},
    }


def report(res: dict[str, Any]) -> str:
    rows = [
        [
            name,
            m["warm_mib"],
            m["end_mib"],
            m["growth_mib"],
            m["mib_per_10min"],
            f"{m['fds_warm']:.0f} -> {m['fds_end']:.0f}",
            "yes" if m["rising"] else "no",
        ]
        for name, m in res["memory"].items()
    ]
    mem = markdown_table(
        ["process", "PSS warm MiB", "PSS end MiB", "growth MiB", "MiB / 10 min", "files", "rising"],
        rows,
    )
    w = res["windows"]
    lat = markdown_table(
        ["t (s)", "load", "chats ok", "failed", "TTFT p50", "TTFT p99", "total p50", "total p99"],
        [
            [
                r["t_s"],
                r["load"],
                r["completed"],
                r["failed"],
                r["ttft_p50_ms"],
                r["ttft_p99_ms"],
                r["total_p50_ms"],
                r["total_p99_ms"],
            ]
            for r in w[:: max(1, len(w) // 10)] + w[-1:]
        ],
    )
    summary = (
        f"chats completed {res['chats_completed']:,}, failed {res['chats_failed']:,};"
        f" runs accepted {res['runs_accepted']:,}: without end event"
        f" {res['runs_without_end_event']}, with two {res['runs_with_two_end_events']},"
        f" without stream_end at the client {res['runs_without_stream_end_at_client']};"
        f" domain events {res['domain_events_published']:,};"
        f" documents uploaded {res['documents_uploaded']}, upload failures"
        f" {res['documents_upload_failed']}, not indexed {res['documents_not_indexed']};"
        f" RUN_EVENTS consumers"
        f" {res['bus_before']['run_events_consumers']} before -> "
        f"{res['bus_after']['run_events_consumers']} after; analytics backlog"
        f" {res['bus_after']['analytics_pending']},"
        f" unacked {res['bus_after']['analytics_unacked']};"
        f" errors {res['errors'] or 'none'}"
    )
    return f"{summary}\n\n{lat}\n\n{mem}"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--think", type=float, default=1.0, help="seconds between chats")
    parser.add_argument("--events-per-second", type=float, default=50.0)
    parser.add_argument("--uploaders", type=int, default=4, help="document upload clients")
    parser.add_argument("--upload-every", type=float, default=15.0, help="seconds per upload")
    parser.add_argument("--window", type=float, default=30.0, help="seconds per report line")
    parser.add_argument("--settle", type=float, default=60.0, help="seconds to drain at the end")
    parser.add_argument("--keep", action="store_true", help="keep engine data and logs")
    parser.add_argument("--json", type=Path, help="write the results as JSON here")
    args = parser.parse_args(argv)
    if args.minutes <= 0 or args.clients < 1 or args.window <= 0:
        parser.error("--minutes and --window must be > 0, --clients >= 1")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    isolate_environment()
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    info = machine_info()
    print(f"machine: {info}", flush=True)
    # All clients are the dev tenant's: let it hold every run slot of the replica (the default
    # per-tenant share, 8 of 32, would refuse runs that waited through every redelivery).
    env = {
        "AGENTBUS_RATE_LIMITS": json.dumps(RATE_LIMITS),
        "AGENTBUS_MAX_RUNS_PER_TENANT": "32",
    }
    with bench_root(args.keep) as root:
        plat = Platform(root / "var", gateway_port=free_port(), extra_env=env)
        try:
            plat.start(timeout=240)
            res = asyncio.run(soak(plat, args))
        finally:
            plat.stop()
    print()
    print(report(res))
    write_json(
        args.json.resolve() if args.json else None,
        {"results": res, "machine": info, "command": " ".join(sys.argv)},
    )


if __name__ == "__main__":
    main()
