"""`agentbus eval --since 1h` over runs recorded by the whole platform: runs through the
orchestrator, RunFinished into ClickHouse, recorded_runs back out, scores stored and queried."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import nats
import pytest
from nats.aio.client import Client as NatsClient
from nats.js.api import DeliverPolicy

from agentbus.contracts import (
    AnalyticsQuery,
    AnalyticsResult,
    DocumentIndexed,
    RunEvent,
    RunRequested,
    new_id,
)
from agentbus.contracts import subjects as s
from agentbus.runtime.clients.ingest import follow, submit
from agentbus.runtime.platform import Platform

from .knowledge import ONCALL, RUNBOOK

pytestmark = pytest.mark.e2e

CLI = [sys.executable, "-m", "agentbus.runtime.cli"]
TENANT = "evals-e2e"
METRICS = {"conciseness", "hallucination", "helpfulness", "relevancy", "toxicity"}
QUESTIONS = [
    "How do we roll back a release?",
    "Who gets paged when the primary on-call does not acknowledge?",
    "When do on-call shifts hand over?",
]


@pytest.fixture
async def nc(platform: Platform) -> AsyncIterator[NatsClient]:
    client = await nats.connect(platform.engines.urls()["nats"])
    yield client
    await client.close()


async def query(nc: NatsClient, name: str, **params: str | float | int) -> AnalyticsResult:
    request = AnalyticsQuery(tenant_id=TENANT, name=name, params=params)  # type: ignore[arg-type]
    reply = await nc.request(s.ANALYTICS_QUERY, request.model_dump_json().encode(), timeout=30)
    result = AnalyticsResult.model_validate_json(reply.data)
    assert result.error is None, result.error
    return result


async def run_to_end(nc: NatsClient, question: str) -> RunEvent:
    run = RunRequested(
        tenant_id=TENANT,
        run_id=new_id(),
        thread_id=new_id(),
        input={"messages": [{"role": "user", "content": question}]},
    )
    sub = await nc.jetstream().subscribe(
        s.run_events(run.run_id), ordered_consumer=True, deliver_policy=DeliverPolicy.ALL
    )
    try:
        await nc.jetstream().publish(
            s.RUNS_SUBMIT, run.model_dump_json().encode(), headers={"Nats-Msg-Id": run.run_id}
        )
        while True:
            event = RunEvent.model_validate_json((await sub.next_msg(timeout=120)).data)
            if event.type == "end":
                return event
    finally:
        await sub.unsubscribe()


async def until(check: Callable[[], Awaitable[bool]], timeout: float = 90.0) -> None:
    """Poll an async predicate: analytics stores telemetry in batches, flushed on an interval."""
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "timed out waiting for analytics"
        await asyncio.sleep(1.0)


async def test_eval_scores_every_recorded_run_on_every_metric(
    nc: NatsClient, platform: Platform, tmp_path: Path
) -> None:
    for name, text in (("rollback.txt", RUNBOOK), ("oncall.md", ONCALL)):
        sub = await submit(nc, TENANT, text.encode(), filename=name, source=name)
        outcomes = [e async for e in follow(nc, sub.document_id, sha256=sub.sha256, timeout=180)]
        assert isinstance(outcomes[-1], DocumentIndexed), outcomes[-1]

    ends = [await run_to_end(nc, q) for q in QUESTIONS]
    assert all(e.status == "success" for e in ends), ends
    run_ids = {e.run_id for e in ends}

    recorded: dict[str, dict[str, object]] = {}

    async def all_recorded() -> bool:
        result = await query(nc, "recorded_runs", since_hours=1, limit=100)
        recorded.update({str(r[0]): dict(zip(result.columns, r, strict=True)) for r in result.rows})
        return run_ids <= recorded.keys()

    await until(all_recorded)
    for run_id in run_ids:
        row = recorded[run_id]
        assert row["question"] in QUESTIONS and row["answer"], row
        assert json.loads(str(row["contexts"])), row  # the snippets the answer came from

    out = tmp_path / "report.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTBUS_")}
    env["AGENTBUS_DATA_DIR"] = str(platform.data_dir)  # the CLI finds the platform's NATS here
    done = await asyncio.to_thread(
        subprocess.run,
        [*CLI, "eval", "--since", "1h", "--tenant", TENANT, "--out", str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "judge: HEURISTIC" in done.stdout and f"report: {out}" in done.stdout

    report = json.loads(out.read_text())
    assert report["judge"]["kind"] == "heuristic"
    assert report["judge"]["model"] == "local/extractive"
    assert {r["run_id"] for r in report["runs"]} == run_ids
    for run in report["runs"]:
        assert set(run["scores"]) == METRICS, run
        assert all(v["judge"] == "heuristic" for v in run["scores"].values())
        assert run["trace_id"]  # scores link to the run's trace
    assert {m["name"] for m in report["metrics"]} == METRICS
    assert all(m["runs"] == len(run_ids) and m["judge"] == "heuristic" for m in report["metrics"])
    by_metric = {m["name"]: m for m in report["metrics"]}
    # Extractive answers copy the retrieved text: nothing made up, nothing toxic.
    assert by_metric["hallucination"]["mean_score"] > 0.8
    assert by_metric["toxicity"]["min_score"] == 1.0

    evaluation_id = report["evaluation_id"]
    stored: dict[str, list[Any]] = {}

    async def all_stored() -> bool:
        result = await query(nc, "evaluations", since_hours=1, evaluation_id=evaluation_id)
        stored.update({str(r[0]): r for r in result.rows})
        return set(stored) == METRICS and all(r[2] == len(run_ids) for r in stored.values())

    await until(all_stored)
    for metric, (_, judge, runs, mean, low) in stored.items():
        assert (judge, runs) == ("heuristic", len(run_ids))
        assert mean == pytest.approx(by_metric[metric]["mean_score"], abs=1e-3)
        assert low == pytest.approx(by_metric[metric]["min_score"], abs=1e-3)
