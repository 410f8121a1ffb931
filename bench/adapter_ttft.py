"""Time to first token through each protocol adapter of the gateway vs. its native SSE route,
for the same run of the same assistant, in the same process run.

Everything runs as `agentbus up` runs it (engines on free 127.0.0.1 ports, the orchestrator and
ONE gateway as their own processes), with the `echo` assistant by default: an instant model, so
the run itself adds as little noise as possible. Rate limits are set so they never refuse.

Paths, each one streamed request on a new thread, read to the end of its stream:
- `native`: `POST /api/v1/chat/stream`; first token = the data line of the first `event: token`.
- `aisdk`: `POST /api/chat` (what `useChat`'s DefaultChatTransport sends); first token = the
  first `text-delta` chunk. Run id: the `start` chunk's messageId.
- `openai`: `POST /v1/chat/completions` with `stream: true`; first token = the first chunk with
  non-empty `delta.content`. Run id: the `X-Agentbus-Run-Id` header.
- `a2a`: `POST /a2a/<assistant>` `SendStreamingMessage`; first token = the first
  `artifactUpdate`. Run id: the task id of the first result.
Every data line is parsed as JSON on every path, as a client would. The client is a minimal
HTTP/1.1 reader on asyncio streams (one connection per request) that takes each line the moment
its bytes arrive (through aiohttp's line iterator, a frame the adapters send with the headers
reached the benchmark only with the tokens, tens of ms later; on the raw socket it did not).

Per request: TTFT (first token at the client - just before the request), and the gateway's own
share of it: "request to submit" (the RunRequested seen on `agentbus.v1.runs.submit` - just
before the request: HTTP, auth, rate limit, body, thread and run rows, admission, publish) plus
"bus to client" (first token at the client - the same token on `agentbus.v1.runs.events.>`),
both from core NATS subscriptions in this process. The share leaves out the orchestrator (its
pull of the run, the graph), the same for every path and the noisiest part of TTFT, so an
adapter's own cost shows as its share minus `native`'s. And the gateway process's CPU time
during each request (psutil; requests run one at a time, so it is that request's): less
sensitive to a busy machine than wall times. Paths take turns request by request
(A B C D, B C D A, ...) after `--warmup` requests each, so load from elsewhere on the machine
hits them alike.

Run: `.venv/bin/python -m bench.adapter_ttft [--runs 200] [--warmup 10]
[--assistant echo] [--json out.json]`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

if __package__ in (None, ""):  # `python bench/adapter_ttft.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import nats
import psutil
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from agentbus.contracts import new_id
from agentbus.contracts import subjects as s
from agentbus.runtime.engines import free_port
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
from bench.gateway_streams import BusTap, wait_http

RATE_LIMITS = {r: "1000000/second" for r in ("chat", "stream", "register", "login", "upload")}
MESSAGE = "one two three four five six seven eight"  # 8 words, as bench/run_overhead.py


@dataclass
class Sample:
    path: str
    t0: float = 0.0
    run_id: str = ""
    first_token: float | None = None
    bus_first_token: float | None = None
    submitted: float | None = None  # RunRequested seen on agentbus.v1.runs.submit
    gateway_cpu_s: float = 0.0  # the gateway process's CPU time during the request
    ok: bool = False

    @property
    def gateway_s(self) -> float | None:
        """The gateway's own share of TTFT: request -> run published, plus first token on the
        bus -> at the client."""
        if self.submitted is None or self.first_token is None or self.bus_first_token is None:
            return None
        return (self.submitted - self.t0) + (self.first_token - self.bus_first_token)


PATHS = ("native", "aisdk", "openai", "a2a")


# What each path POSTs, and how its stream shows the run id and the first token.
def request_of(path: str, assistant: str) -> tuple[str, dict[str, Any]]:
    if path == "native":
        return "/api/v1/chat/stream", {"message": MESSAGE, "assistant_id": assistant}
    if path == "aisdk":
        body = {
            "id": new_id(),
            "messages": [
                {"id": new_id(), "role": "user", "parts": [{"type": "text", "text": MESSAGE}]}
            ],
            "trigger": "submit-message",
            "assistant_id": assistant,
        }
        return "/api/chat", body
    if path == "openai":
        body = {
            "model": assistant,
            "stream": True,
            "messages": [{"role": "user", "content": MESSAGE}],
        }
        return "/v1/chat/completions", body
    if path == "a2a":
        message = {"messageId": new_id(), "role": "ROLE_USER", "parts": [{"text": MESSAGE}]}
        body = {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "SendStreamingMessage",
            "params": {"message": message},
        }
        return f"/a2a/{assistant}", body
    raise ValueError(path)


def token_and_run(path: str, data: Any, sample: Sample) -> bool:
    """Note the run id from `data`; True when `data` is the first token."""
    if path == "native":
        return True  # only the data line of an `event: token` is passed here
    if path == "aisdk":
        if data.get("type") == "start":
            sample.run_id = str(data.get("messageId", ""))
        return bool(data.get("type") == "text-delta")
    if path == "openai":
        choices = data.get("choices") or []
        return bool(choices and (choices[0].get("delta") or {}).get("content"))
    if path == "a2a":
        value = data.get("result") or {}
        if "task" in value:
            sample.run_id = str(value["task"]["id"])
        return "artifactUpdate" in value
    return False


class RawHttp:
    """A minimal HTTP/1.1 client on asyncio streams, one connection per request, that hands
    over each body line the moment its bytes arrive (client libraries may hold lines back)."""

    def __init__(self, host: str, port: int, key: str) -> None:
        self.host, self.port, self.key = host, port, key

    async def post_lines(
        self, url: str, body: dict[str, Any]
    ) -> AsyncIterator[tuple[float, bytes, dict[str, str]]]:
        data = json.dumps(body).encode()
        reader, writer = await asyncio.open_connection(self.host, self.port)
        try:
            head = (
                f"POST {url} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
                f"x-api-key: {self.key}\r\ncontent-type: application/json\r\n"
                f"content-length: {len(data)}\r\nconnection: close\r\n\r\n"
            )
            writer.write(head.encode() + data)
            await writer.drain()
            status = await reader.readline()
            headers: dict[str, str] = {}
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode().partition(":")
                headers[name.strip().lower()] = value.strip()
            if b" 200 " not in status:
                return
            chunked = headers.get("transfer-encoding") == "chunked"
            pending = b""
            while True:
                if chunked:
                    size = int((await reader.readline()).strip() or b"0", 16)
                    if size == 0:
                        return
                    piece = await reader.readexactly(size + 2)
                    piece = piece[:-2]
                else:
                    piece = await reader.read(65536)
                    if not piece:
                        return
                now = time.perf_counter()
                pending += piece
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    yield now, line.rstrip(b"\r"), headers
        finally:
            writer.close()


class Submissions:
    """When each run's RunRequested reached the bus (core subscription on the submit subject)."""

    def __init__(self) -> None:
        self.at: dict[str, float] = {}

    async def start(self, nc: NatsClient) -> None:
        async def seen(msg: Msg) -> None:
            self.at[json.loads(msg.data)["run_id"]] = time.perf_counter()

        await nc.subscribe(s.RUNS_SUBMIT, cb=seen)
        await nc.flush()


def cpu_s(proc: psutil.Process | None) -> float:
    if proc is None:
        return 0.0
    times = proc.cpu_times()
    return float(times.user + times.system)


async def one(
    http: RawHttp,
    path: str,
    assistant: str,
    tap: BusTap,
    submits: Submissions,
    gateway: psutil.Process | None = None,
) -> Sample:
    sample = Sample(path)
    cpu_before = cpu_s(gateway)
    url, body = request_of(path, assistant)
    event = ""
    sample.t0 = time.perf_counter()
    async for now, line, headers in http.post_lines(url, body):
        if not sample.run_id:
            if path == "native":
                sample.run_id = headers.get("content-location", "").split("/")[-2]
            elif path == "openai":
                sample.run_id = headers.get("x-agentbus-run-id", "")
        if line.startswith(b"event:"):
            event = line[6:].strip().decode()
            continue
        if not line.startswith(b"data:"):
            continue
        text = line[5:].strip()
        # Read on to the end of the response, past `[DONE]` and `stream_end`: the gateway
        # settles the run after its last event (run record, history, consumer), and the
        # native route sends `stream_end` before that work, the adapters after it. A client
        # that left at its last frame made the NEXT request pay it (+1.5-2.5 ms on whichever
        # path came after native in the round robin).
        if text == b"[DONE]":
            continue
        data = json.loads(text)
        if path == "native" and event != "token":
            continue
        if token_and_run(path, data, sample) and sample.first_token is None:
            sample.first_token = now
    if sample.run_id:
        with contextlib.suppress(TimeoutError):
            await tap.wait_end(sample.run_id, 30.0)
        sample.bus_first_token = tap.first_token.get(sample.run_id)
        sample.submitted = submits.at.pop(sample.run_id, None)
        tap.forget(sample.run_id)
    sample.gateway_cpu_s = cpu_s(gateway) - cpu_before
    sample.ok = sample.first_token is not None and sample.bus_first_token is not None
    return sample


def report(samples: dict[str, list[Sample]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for path, done in samples.items():
        ok = [s for s in done if s.ok]
        out[path] = {
            "runs": len(done),
            "ok": len(ok),
            "ttft": summarize([s.first_token - s.t0 for s in ok if s.first_token]),
            "gateway": summarize([s.gateway_s for s in ok if s.gateway_s is not None]),
            "gateway_cpu_ms_mean": 1e3 * sum(s.gateway_cpu_s for s in ok) / max(1, len(ok)),
            "request_to_submit": summarize(
                [s.submitted - s.t0 for s in ok if s.submitted is not None]
            ),
            "request_to_bus": summarize(
                [s.bus_first_token - s.t0 for s in ok if s.bus_first_token]
            ),
            "bus_to_client": summarize(
                [
                    s.first_token - s.bus_first_token
                    for s in ok
                    if s.first_token and s.bus_first_token
                ]
            ),
        }
    return out


def table(res: dict[str, Any]) -> str:
    native = res["native"]
    rows = []
    for path, r in res.items():
        ttft, gw, sub, bus = r["ttft"], r["gateway"], r["request_to_submit"], r["bus_to_client"]
        rows.append(
            [
                path,
                f"{r['ok']}/{r['runs']}",
                f"{ttft['p50_ms']:.2f}",
                f"{ttft['p50_ms'] / native['ttft']['p50_ms']:.2f}",
                f"{sub['p50_ms']:.2f}",
                f"{bus['p50_ms']:.2f}",
                f"{gw['p50_ms']:.2f}",
                f"{gw['p90_ms']:.2f}",
                f"{gw['p50_ms'] - native['gateway']['p50_ms']:+.2f}",
                f"{r['gateway_cpu_ms_mean']:.2f}",
                f"{r['gateway_cpu_ms_mean'] - native['gateway_cpu_ms_mean']:+.2f}",
            ]
        )
    return markdown_table(
        [
            "path",
            "ok",
            "TTFT p50 ms",
            "TTFT ratio",
            "request→submit p50 ms",
            "bus→client p50 ms",
            "gateway share p50 ms",
            "gateway share p90 ms",
            "added vs native p50 ms",
            "gateway CPU ms/request",
            "CPU added vs native ms",
        ],
        rows,
    )


async def measure(
    base: str, key: str, nats_url: str, args: argparse.Namespace, gateway_pid: int | None = None
) -> dict[str, Any]:
    gateway = psutil.Process(gateway_pid) if gateway_pid else None
    nc = await nats.connect(nats_url)
    tap = BusTap(nc)
    await tap.start()
    submits = Submissions()
    await submits.start(nc)
    paths: list[str] = args.paths
    calls: dict[str, Callable[[], Awaitable[Sample]]] = {}
    samples: dict[str, list[Sample]] = {p: [] for p in paths}
    try:
        http = RawHttp(urlsplit(base).hostname or "127.0.0.1", urlsplit(base).port or 80, key)
        for p in paths:
            calls[p] = partial(one, http, p, args.assistant, tap, submits, gateway)
            for _ in range(args.warmup):
                await calls[p]()
        # Round robin, one request of each path per round, the order rotating every round: on a
        # busy machine, load from elsewhere changes from second to second and must hit every
        # path alike (segments of many requests per path saw different load).
        for i in range(args.runs):
            k = i % len(paths)
            for p in paths[k:] + paths[:k]:
                samples[p].append(await calls[p]())
    finally:
        await nc.close()
    res = report(samples)
    for path, r in res.items():
        print(
            f"  {path:<7} {r['ok']}/{r['runs']} ok, TTFT p50 {r['ttft'].get('p50_ms', 0):7.2f} ms,"
            f" gateway p50 {r['gateway'].get('p50_ms', 0):6.2f} ms"
            f" (to submit {r['request_to_submit'].get('p50_ms', 0):6.2f} ms),"
            f" bus->client p50 {r['bus_to_client'].get('p50_ms', 0):6.2f} ms"
        )
    return res


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=200, help="requests per path (default 200)")
    parser.add_argument("--warmup", type=int, default=10, help="uncounted requests per path")
    parser.add_argument("--assistant", default="echo", help="assistant of every run (echo)")
    parser.add_argument(
        "--paths",
        default=",".join(PATHS),
        help=f"comma-separated paths to compare, native first (default {','.join(PATHS)})",
    )
    parser.add_argument("--keep", action="store_true", help="keep engine data and logs")
    parser.add_argument("--json", type=Path, help="write the results as JSON here")
    args = parser.parse_args(argv)
    if args.runs < 1 or args.warmup < 0:
        parser.error("--runs must be >= 1 and --warmup >= 0")
    args.paths = [p.strip() for p in args.paths.split(",") if p.strip()]
    if not args.paths or args.paths[0] != "native" or not set(args.paths) <= set(PATHS):
        parser.error(f"--paths: native first, then any of {', '.join(PATHS[1:])}")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    isolate_environment()
    info = machine_info()
    print(f"machine: {info}")
    env = {"AGENTBUS_RATE_LIMITS": json.dumps(RATE_LIMITS)}
    with bench_root(args.keep) as root, engines(root, extra_env=env) as plat:
        plat.gateway_port = free_port()

        async def run() -> dict[str, Any]:
            async with (
                service(plat, "orchestrator", "process"),
                service(plat, "gateway", "process"),
            ):
                await wait_http(plat.gateway_url, 60)
                key = (plat.data_dir / "dev-api-key").read_text().strip()
                pid = plat.procs["gateway"].pid
                return await measure(plat.gateway_url, key, plat.engines.nats.url, args, pid)

        results = asyncio.run(run())
    print()
    print(table(results))
    write_json(
        args.json.resolve() if args.json else None,
        {"results": results, "machine": info, "command": " ".join(sys.argv)},
    )


if __name__ == "__main__":
    main()
