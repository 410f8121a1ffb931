"""The evaluation runner over the real bus: recorded runs in, EvaluationScored out (once), and
`agentbus eval` as a process. Analytics' reply is played by a plain NATS responder here; the
whole platform is in tests/e2e/test_eval.py."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js.api import DeliverPolicy

from agentbus.analytics.evals.judges import HeuristicJudge
from agentbus.analytics.evals.loader import load_metrics
from agentbus.analytics.evals.runner import (
    RECORDED_COLUMNS,
    EvalError,
    RecordedRun,
    evaluate,
    fetch_runs,
    parse_runs,
)
from agentbus.contracts import AnalyticsQuery, AnalyticsResult, EvaluationScored, new_id
from agentbus.contracts import subjects as s
from agentbus.runtime.engines import NatsEngine
from agentbus.runtime.provisioning import provision

CONTEXT = "Run deployctl rollback --to previous from the release host."


def row(run_id: str, answer: str = "Run deployctl rollback [1].", **over: object) -> list[object]:
    values: dict[str, object] = {
        "run_id": run_id,
        "trace_id": "ab" * 16,
        "thread_id": "t1",
        "assistant_id": "agent",
        "status": "success",
        "ts": "2026-11-21T10:00:00Z",
        "question": "How do we roll back?",
        "answer": answer,
        "contexts": json.dumps([CONTEXT]),
        **over,
    }
    return [values[c] for c in RECORDED_COLUMNS]


def result(rows: list[list[object]], **over: object) -> AnalyticsResult:
    return AnalyticsResult.model_validate(
        {
            "tenant_id": "evals-unit",
            "name": "recorded_runs",
            "columns": list(RECORDED_COLUMNS),
            "rows": rows,
            **over,
        }
    )


def test_rows_become_runs_and_unreadable_rows_are_reported() -> None:
    runs, problems = parse_runs(
        result(
            [
                row("r1"),
                row("r2", trace_id="", contexts=""),
                row("r3", contexts="not json"),
                row("r4", contexts=json.dumps([1, 2])),
            ]
        )
    )
    assert [r.run_id for r in runs] == ["r1", "r2"]
    assert runs[0].contexts == [CONTEXT] and runs[0].trace_id == "ab" * 16
    assert runs[1].trace_id is None and runs[1].contexts == []
    assert [(p.run_id, p.reason) for p in problems] == [
        ("r3", "contexts is not a JSON list of text"),
        ("r4", "contexts is not a JSON list of text"),
    ]
    with pytest.raises(EvalError, match="without column"):
        parse_runs(result([], columns=["run_id"]))


@pytest.fixture
async def nc(nats_engine: NatsEngine) -> AsyncIterator[NatsClient]:
    client = await nats.connect(nats_engine.url)
    await provision(client.jetstream())
    yield client
    await client.close()


async def stored(nc: NatsClient, evaluation_id: str) -> list[tuple[str, EvaluationScored]]:
    """Every EvaluationScored of one evaluation in TELEMETRY, with its Nats-Msg-Id."""
    sub = await nc.jetstream().subscribe(
        s.TELEMETRY_EVALUATION_SCORED, ordered_consumer=True, deliver_policy=DeliverPolicy.ALL
    )
    found: list[tuple[str, EvaluationScored]] = []
    try:
        while True:
            try:
                msg = await sub.next_msg(timeout=1.0)
            except nats.errors.TimeoutError:
                return found
            scored = EvaluationScored.model_validate_json(msg.data)
            if scored.evaluation_id == evaluation_id:
                found.append(((msg.headers or {}).get("Nats-Msg-Id", ""), scored))
    finally:
        await sub.unsubscribe()


async def test_every_run_and_metric_is_published_once_even_when_retried(nc: NatsClient) -> None:
    metrics = list(load_metrics().values())
    runs = [
        RecordedRun("r1", None, "t", "agent", "success", "ts", "How do we roll back?", "", []),
        RecordedRun(
            "r2", "cd" * 16, "t", "agent", "success", "ts", "roll back?", CONTEXT, [CONTEXT]
        ),
        RecordedRun("r3", None, "t", "agent", "success", "ts", "q?", "Shut up, idiot.", []),
        RecordedRun("r2", "cd" * 16, "t", "agent", "success", "ts", "roll back?", CONTEXT, []),
    ]
    evaluation_id = new_id()
    seen: list[tuple[int, int]] = []

    async def run_once() -> None:
        report = await evaluate(
            nc,
            tenant_id="evals-unit",
            since_hours=1,
            runs=runs,
            metrics=metrics,
            judge=HeuristicJudge(),
            evaluation_id=evaluation_id,
            progress=lambda done, total: seen.append((done, total)),
        )
        assert [r.run_id for r in report.runs] == ["r2", "r3"]  # r2 judged once
        assert [(p.run_id, p.reason) for p in report.skipped] == [
            ("r1", "no recorded answer (status success)")
        ]
        assert report.published == 10 and report.errors == []
        assert report.judge.kind == "heuristic" and "HEURISTIC" in report.judge.note
        summary = {m.name: m for m in report.metrics}
        assert summary["toxicity"].min_score == 0.0 and summary["toxicity"].runs == 2
        assert all(m.judge == "heuristic" for m in report.metrics)

    await run_once()
    await run_once()  # the same evaluation again: JetStream drops every duplicate
    assert seen[0] == (0, 2) and seen[-1] == (2, 2)
    found = await stored(nc, evaluation_id)
    keys = sorted(key for key, _ in found)
    assert len(keys) == 10 and len(set(keys)) == 10
    assert f"{evaluation_id}:r2:hallucination" in keys
    by_key = dict(found)
    r2 = by_key[f"{evaluation_id}:r2:toxicity"]
    assert (r2.tenant_id, r2.trace_id, r2.judge, r2.judge_model, r2.score) == (
        "evals-unit",
        "cd" * 16,
        "heuristic",
        "local/extractive",
        1.0,
    )


async def test_fetch_reports_what_analytics_could_not_do(nc: NatsClient) -> None:
    with pytest.raises(EvalError, match="no analytics service answers"):
        await fetch_runs(nc, "evals-unit", 1.0, 10, timeout=2)
    replies = [
        b'{"error": "bad json", "reason": "invalid_json"}',
        result([], error="since_hours: too large").model_dump_json().encode(),
        b"\xff",
    ]

    async def answer(msg: Msg) -> None:
        await msg.respond(replies.pop(0))

    sub = await nc.subscribe(s.ANALYTICS_QUERY, cb=answer)
    try:
        with pytest.raises(EvalError, match="analytics rejected recorded_runs: bad json"):
            await fetch_runs(nc, "evals-unit", 1.0, 10, timeout=5)
        with pytest.raises(EvalError, match="could not answer recorded_runs: since_hours"):
            await fetch_runs(nc, "evals-unit", 1.0, 10, timeout=5)
        with pytest.raises(EvalError, match="unreadable reply"):
            await fetch_runs(nc, "evals-unit", 1.0, 10, timeout=5)
    finally:
        await sub.unsubscribe()
    with pytest.raises(EvalError, match=r"limit must be 1\.\.1000"):
        await fetch_runs(nc, "evals-unit", 1.0, 5000, timeout=1)


async def cli(tmp_path: Path, nats_url: str, *args: str, **extra_env: str) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTBUS_")}
    env.update({"AGENTBUS_NATS_URL": nats_url, "AGENTBUS_DATA_DIR": str(tmp_path / "var")})
    env.update(extra_env)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "agentbus.runtime.cli",
        "eval",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_agentbus_eval_prints_a_table_and_writes_the_report(
    nc: NatsClient, nats_engine: NatsEngine, tmp_path: Path
) -> None:
    asked: list[AnalyticsQuery] = []

    async def answer(msg: Msg) -> None:
        query = AnalyticsQuery.model_validate_json(msg.data)
        asked.append(query)
        rows = [row("run-a"), row("run-b", answer="Lunch is at noon.")]
        await msg.respond(result(rows, tenant_id=query.tenant_id).model_dump_json().encode())

    sub = await nc.subscribe(s.ANALYTICS_QUERY, cb=answer)
    try:
        code, out, err = await cli(
            tmp_path, nats_engine.url, "--since", "90m", "--tenant", "evals-cli"
        )
        assert code == 0, err
        assert asked[0].tenant_id == "evals-cli" and asked[0].params["since_hours"] == 1.5
        lines = out.splitlines()
        assert lines[0].split() == ["metric", "judge", "runs", "mean", "min", "max", "errors"]
        for name in ("conciseness", "hallucination", "helpfulness", "relevancy", "toxicity"):
            assert any(line.split()[:3] == [name, "heuristic", "2"] for line in lines), out
        assert "judge: HEURISTIC" in out and "10 scores stored" in out
        assert "judging [########################] 2/2 runs" in err
        reports = list((tmp_path / "var" / "evals").glob("*.json"))
        assert len(reports) == 1 and f"report: {reports[0]}" in out
        report = json.loads(reports[0].read_text())
        assert {r["run_id"] for r in report["runs"]} == {"run-a", "run-b"}
        assert all(len(r["scores"]) == 5 for r in report["runs"])

        # --json, one metric, no report file: the report goes to stdout only.
        code, out, err = await cli(
            tmp_path,
            nats_engine.url,
            "--tenant",
            "evals-cli",
            "--metric",
            "toxicity",
            "--no-report",
            "--json",
        )
        assert code == 0, err
        report = json.loads(out)
        assert [m["name"] for m in report["metrics"]] == ["toxicity"]
        assert report["judge"]["kind"] == "heuristic"
        assert len(list((tmp_path / "var" / "evals").glob("*.json"))) == 1
    finally:
        await sub.unsubscribe()


# LiteLLM's own mock_response: the whole Router/LiteLLM call path with no provider behind it.
MOCK_MODELS = """
model_list:
  - model_name: fast
    litellm_params: {model: local/extractive}
  - model_name: deep
    litellm_params:
      model: openai/gpt-4o-mini
      api_key: sk-test
      mock_response: "Sure.\\n```json\\n{\\"score\\": 4, \\"reason\\": \\"On topic.\\"}\\n```"
router_settings: {num_retries: 0}
"""


async def test_agentbus_eval_with_a_real_model_judges_with_the_llm(
    nc: NatsClient, nats_engine: NatsEngine, tmp_path: Path
) -> None:
    async def answer(msg: Msg) -> None:
        query = AnalyticsQuery.model_validate_json(msg.data)
        rows = [row("run-llm")]
        await msg.respond(result(rows, tenant_id=query.tenant_id).model_dump_json().encode())

    config = tmp_path / "models.yaml"
    config.write_text(MOCK_MODELS)
    sub = await nc.subscribe(s.ANALYTICS_QUERY, cb=answer)
    try:
        code, out, err = await cli(
            tmp_path,
            nats_engine.url,
            "--tenant",
            "evals-llm",
            "--metric",
            "relevancy",
            "toxicity",
            "--json",
            AGENTBUS_MODELS_CONFIG=str(config),
        )
    finally:
        await sub.unsubscribe()
    assert code == 0, err
    report = json.loads(out)
    assert report["judge"]["kind"] == "llm"
    assert report["judge"]["model"] == "deep (openai/gpt-4o-mini)"
    scores = report["runs"][0]["scores"]
    # 4 on 1..5: 0.75 where higher is better, 0.25 for toxicity (its 5 is the worst).
    assert (scores["relevancy"]["score"], scores["toxicity"]["score"]) == (0.75, 0.25)
    assert scores["relevancy"]["judge"] == "llm" and scores["relevancy"]["reason"] == "On topic."
    found = dict(await stored(nc, report["evaluation_id"]))
    assert {v.judge for v in found.values()} == {"llm"} and len(found) == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--since", "2x"], "invalid duration '2x'"),
        (["--since", "0h"], "must be more than 0"),
        (["--limit", "0"], "--limit must be 1..1000"),
        (["--metric", "nope"], "unknown metric(s) nope; available: conciseness"),
        (["--model", "nomodel"], "judge model 'nomodel' is not a group of"),
        (["--tenant", "dev"], None),  # valid options: it gets as far as connecting
    ],
)
async def test_agentbus_eval_bad_options_are_one_clear_line(
    tmp_path: Path, args: list[str], message: str | None
) -> None:
    # Nothing answers at this URL: option errors come before any connection.
    code, _out, err = await cli(tmp_path, "nats://127.0.0.1:1", *args)
    assert code == 2
    if message is None:
        assert "127.0.0.1:1" in err  # got as far as connecting
    else:
        assert err.strip() == f"agentbus: {message}" or message in err, err
        assert err.count("\n") == 1
