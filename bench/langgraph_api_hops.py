"""Where one run's time goes on the LangGraph API path, from the gateway's and orchestrator's
own spans (the traces a platform writes to `<data dir>/traces/*.jsonl`).

Takes the runs whose `POST /threads/{thread_id}/runs/stream` overlapped no other (the c=1
runs of bench/langgraph_api_vs_dev.py, kept with `--keep`) and prints the median of each hop:

- thread creation: the `POST /threads` span;
- HTTP in to submit: request span start -> `agentbus.v1.runs.submit publish` start: auth, rate
  limit, assistant, thread and run rows, admission on the thread (no span of their own);
- submit publish: the publish and its PubAck;
- fetch: publish start -> the orchestrator's `agentbus.v1.runs.submit process` start;
- run start: process start -> `invoke_agent` start (decode, tenant cap, last event, slot);
- first event: `invoke_agent` start -> the first `runs.events` publish (the graph opened);
- to the node: first event -> the end of the third event publish (metadata, input values and
  node_start, each awaiting its PubAck, plus the checkpointer's reads and writes of the input);
- tokens to end: -> `invoke_agent` end (20 token events without spans, updates, values, the
  checkpointer, the final state read, `end`);
- SSE out: `invoke_agent` end -> request span end (the last frames reach the client).

Run: `.venv/bin/python -m bench.langgraph_api_hops <kept data dir>/var/traces`.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path
from typing import Any

STREAM = "POST /threads/{thread_id}/runs/stream"
SUBMIT_PUB = "agentbus.v1.runs.submit publish"
SUBMIT_PROC = "agentbus.v1.runs.submit process"
EVENT_PUB = "agentbus.v1.runs.events.{run_id} publish"


def load(traces: Path) -> list[dict[str, Any]]:
    spans: list[dict[str, Any]] = []
    for path in sorted(traces.glob("*.jsonl")):
        for line in path.read_text().splitlines():
            for rs in json.loads(line).get("resourceSpans", []):
                for ss in rs.get("scopeSpans", []):
                    for sp in ss.get("spans", []):
                        sp["start"] = int(sp["startTimeUnixNano"]) / 1e6
                        sp["end"] = int(sp["endTimeUnixNano"]) / 1e6
                        spans.append(sp)
    return spans


def _start(span: dict[str, Any]) -> float:
    return float(span["start"])


def _alone(spans: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Spans (sorted by start) that overlap no other of the list: the c=1 requests."""
    alone = []
    latest_end = float("-inf")
    for i, span in enumerate(spans):
        before_next = i + 1 == len(spans) or span["end"] < spans[i + 1]["start"]
        if latest_end < span["start"] and before_next:
            alone.append(span)
        latest_end = max(latest_end, span["end"])
    return alone


def hops(spans: list[dict[str, Any]]) -> dict[str, list[float]]:
    by_trace: dict[str, list[dict[str, Any]]] = {}
    for sp in spans:
        by_trace.setdefault(sp["traceId"], []).append(sp)
    roots = sorted((s for s in spans if s["name"] == STREAM), key=lambda s: s["start"])
    alone = _alone(roots)
    out: dict[str, list[float]] = {}

    def add(name: str, value: float) -> None:
        out.setdefault(name, []).append(value)

    creates = [
        s["end"] - s["start"]
        for s in _alone(sorted((s for s in spans if s["name"] == "POST /threads"), key=_start))
    ]
    for root in alone:
        trace = sorted(by_trace[root["traceId"]], key=lambda s: s["start"])
        first = {
            name: next((s for s in trace if s["name"] == name), None)
            for name in (SUBMIT_PUB, SUBMIT_PROC)
        }
        run = next((s for s in trace if s["name"].startswith("invoke_agent")), None)
        events = [s for s in trace if s["name"] == EVENT_PUB]
        pub, proc = first[SUBMIT_PUB], first[SUBMIT_PROC]
        if pub is None or proc is None or run is None or len(events) < 3:
            continue
        add("HTTP in to submit (auth, rate limit, rows, admission)", pub["start"] - root["start"])
        add("submit publish (+PubAck)", pub["end"] - pub["start"])
        add("fetch (publish start to orchestrator)", proc["start"] - pub["start"])
        add("run start (decode, checks, slot)", run["start"] - proc["start"])
        add("first event (graph opened, metadata out)", events[0]["start"] - run["start"])
        add(
            "to the node (input values, node_start, checkpoint)",
            events[2]["end"] - events[0]["start"],
        )
        add("tokens to end (20 tokens, state, end)", run["end"] - events[2]["end"])
        add("SSE out (end event to response closed)", root["end"] - run["end"])
        add("whole request (HTTP in to response closed)", root["end"] - root["start"])
    if creates:
        out["thread creation (POST /threads)"] = creates
    return out


def main() -> None:
    traces = Path(sys.argv[1])
    table = hops(load(traces))
    n = max((len(v) for v in table.values()), default=0)
    print(f"| hop | median ms | p90 ms | runs: {n} |")
    print("|---|---|---|---|")
    for name, values in table.items():
        values.sort()
        p90 = values[int(0.9 * (len(values) - 1))]
        print(f"| {name} | {statistics.median(values):.2f} | {p90:.2f} | |")


if __name__ == "__main__":
    main()
