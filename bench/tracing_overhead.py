"""What tracing adds to a NATS hop: a JetStream publish with and without `nats_span`.

Every raw nats-py publish of the platform (RunRequested, each run event, telemetry) goes through
`nats_span`: a producer span, the W3C headers injected, the span exported by the batch processor
to the span files (the embedded default; OTLP export costs the same on this side of the batch).
Token events carry only the current context (no span of their own). This measures both next
to the same publish without tracing, in the same run, against the same embedded nats-server and
stream: sequential publishes that each await their JetStream ack (as the orchestrator's run
events do), in interleaved segments (raw, span, context, context, span, raw) so load from
elsewhere hits all alike. CPU per publish of this process (including the exporter's thread) is
reported too, less sensitive to a busy machine than wall time, and the span files' bytes per span.

Run: `.venv/bin/python -m bench.tracing_overhead [--publishes 2000] [--segments 4] [--json out]`.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python bench/tracing_overhead.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import nats
from nats.js.client import JetStreamContext

from agentbus.runtime.engines.nats import NatsEngine
from agentbus.runtime.traces import (
    nats_span,
    setup_tracing,
    shutdown_tracing,
    tracer,
    with_trace_context,
)

from .common import foreign_load, isolate_environment, machine_info, markdown_table, write_json

SUBJECT = "bench.tracing.events.r1"
# raw: no tracing; span: nats_span (producer span + headers), as telemetry and most run events;
# context: the current context in the headers only, as token events.
MODES = ("raw", "span", "context")
BODY = b'{"tenant_id":"dev","run_id":"r1","seq":0,"type":"token","data":{"text":"word "}}'


async def segment(js: JetStreamContext, mode: str, n: int, offset: int) -> dict[str, float]:
    latencies = []
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for i in range(n):
        headers = {"Nats-Msg-Id": f"{offset + i}"}
        started = time.perf_counter()
        if mode == "span":
            with nats_span(SUBJECT, headers=headers) as sent:
                await js.publish(SUBJECT, BODY, headers=sent)
        elif mode == "context":
            await js.publish(SUBJECT, BODY, headers=with_trace_context(headers))
        else:
            await js.publish(SUBJECT, BODY, headers=headers)
        latencies.append(time.perf_counter() - started)
    wall = time.perf_counter() - wall0
    return {
        "p50_us": statistics.median(latencies) * 1e6,
        "mean_us": wall / n * 1e6,
        "cpu_us": (time.process_time() - cpu0) / n * 1e6,
    }


async def main(args: argparse.Namespace) -> dict[str, Any]:
    isolate_environment()
    with tempfile.TemporaryDirectory(prefix="agentbus-bench-") as tmp:
        root = Path(tmp)
        setup_tracing("bench", "0", root / "traces", "bench")
        with NatsEngine(root / "nats") as engine, foreign_load() as load:
            nc = await nats.connect(engine.url)
            js = nc.jetstream()
            await js.add_stream(name="BENCHTRACING", subjects=["bench.tracing.>"])
            with tracer().start_as_current_span("run"):  # as inside a run's node
                for k, mode in enumerate(MODES):  # warm-up, every path
                    await segment(js, mode, 200, 10**9 + k * 200)
                results: dict[str, list[dict[str, float]]] = {mode: [] for mode in MODES}
                order = [*MODES, *reversed(MODES)] * max(1, args.segments // 2)
                for k, mode in enumerate(order):
                    results[mode].append(
                        await segment(js, mode, args.publishes, k * args.publishes)
                    )
            await nc.close()
        shutdown_tracing()  # flushes the batch processor
        span_bytes = sum(p.stat().st_size for p in (root / "traces").glob("*.jsonl"))
        spans = 1 + 200 + args.publishes * order.count("span")
    summary = {
        mode: {key: statistics.mean(r[key] for r in rows) for key in rows[0]}
        for mode, rows in results.items()
    }
    rows = [
        [mode, f"{s['p50_us']:.0f}", f"{s['mean_us']:.0f}", f"{s['cpu_us']:.0f}"]
        for mode, s in summary.items()
    ]
    added = {
        mode: {key: summary[mode][key] - summary["raw"][key] for key in summary["raw"]}
        for mode in ("span", "context")
    }
    for mode, diff in added.items():
        rows.append(
            [f"added by {mode}", *(f"{diff[k]:+.0f}" for k in ("p50_us", "mean_us", "cpu_us"))]
        )
    print(markdown_table(["publish", "p50 µs", "mean µs", "CPU µs / publish"], rows))
    print(
        f"\nspan files: {span_bytes / spans:.0f} bytes per span; "
        f"other load: {load.share:.0%} of the CPU"
    )
    out = {
        "machine": machine_info(),
        "publishes_per_segment": args.publishes,
        "segments": order,
        "summary": summary,
        "added": added,
        "bytes_per_span": span_bytes / spans,
        "other_load": load.share,
    }
    write_json(args.json, out)
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="What tracing adds to a JetStream publish")
    parser.add_argument("--publishes", type=int, default=2000, help="publishes per segment")
    parser.add_argument("--segments", type=int, default=4, help="segments per mode (even)")
    parser.add_argument("--json", type=Path, help="write the results here")
    asyncio.run(main(parser.parse_args()))
