"""Per-run evaluation scores (`run_evaluations`) checked against plain Python over the same scores.

Scores come over the bus as `agentbus eval` publishes them: several evaluations of the same runs
(a later score replaces an earlier one for its run and metric), a redelivered copy of one score
(stored twice, counted once), and another tenant's scores that must not show.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

from nats.aio.client import Client as NatsClient

from agentbus.analytics.app import build
from agentbus.analytics.settings import AnalyticsSettings
from agentbus.contracts import EvaluationScored
from agentbus.contracts import subjects as s
from agentbus.runtime.testing import running

from .support import as_dicts, ask, eventually

METRICS = ["faithfulness", "relevancy", "conciseness"]


def synthesize(tenant: str, runs: int, seed: int) -> list[EvaluationScored]:
    """Two or three evaluations over `runs` runs; each scores a random subset of the metrics."""
    rng = random.Random(seed)
    # Whole seconds: the store keeps milliseconds, and the reference compares times exactly.
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=10)
    out = []
    for n in range(rng.randint(2, 3)):
        evaluation = f"ev{n}"
        for r in range(runs):
            for metric in rng.sample(METRICS, rng.randint(1, len(METRICS))):
                out.append(
                    EvaluationScored(
                        tenant_id=tenant,
                        # Same instant for every score of one evaluation: ties go by event id.
                        ts=start + timedelta(hours=n, seconds=rng.choice([0, 0, r])),
                        evaluation_id=evaluation,
                        run_id=f"run-{r:02d}",
                        metric=metric,
                        score=round(rng.random(), 4),
                        judge=rng.choice(["heuristic", "llm"]),
                    )
                )
    return out


def expected(
    scores: list[EvaluationScored], evaluation_id: str | None = None, run_id: str | None = None
) -> list[dict[str, Any]]:
    kept = [
        e for e in scores if evaluation_id in (None, e.evaluation_id) and run_id in (None, e.run_id)
    ]
    groups: dict[tuple[str, str], list[EvaluationScored]] = {}
    for e in {e.id: e for e in kept}.values():
        groups.setdefault((e.run_id, e.metric), []).append(e)
    rows = []
    for (run, metric), group in groups.items():
        latest = max(group, key=lambda e: (e.ts, e.id))
        rows.append(
            {
                "run_id": run,
                "metric": metric,
                "score": latest.score,
                "judge": latest.judge,
                "evaluations": len(group),
                "scored_at": max(e.ts for e in group),
            }
        )
    rows.sort(key=lambda r: (-r["scored_at"].timestamp(), r["run_id"], r["metric"]))
    return rows


def normalised(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {**r, "scored_at": datetime.fromisoformat(str(r["scored_at"]).replace("Z", "+00:00"))}
        for r in rows
    ]


async def test_each_runs_latest_score_per_metric_matches_plain_python(
    analytics_env: dict[str, str], nc: NatsClient, tenant: str
) -> None:
    ours = synthesize(tenant, runs=12, seed=3)
    theirs = synthesize(tenant + "x", runs=3, seed=4)
    js = nc.jetstream()
    for event in [*ours, ours[0], *theirs]:  # ours[0] again: a redelivered copy
        await js.publish(s.TELEMETRY_EVALUATION_SCORED, event.model_dump_json().encode())
    want = expected(ours)

    async with running(build(AnalyticsSettings())):

        async def stored() -> bool:
            rows = as_dicts(await ask(nc, tenant, "run_evaluations", since_hours=48))
            return sum(r["evaluations"] for r in rows) == len({e.id for e in ours})

        await eventually(stored, what="every score stored")

        got = normalised(as_dicts(await ask(nc, tenant, "run_evaluations", since_hours=48)))
        assert got == want
        # Filters: one evaluation, one run; a limit keeps the newest rows.
        one_eval = as_dicts(await ask(nc, tenant, "run_evaluations", evaluation_id="ev0"))
        assert normalised(one_eval) == expected(ours, evaluation_id="ev0")
        one_run = as_dicts(await ask(nc, tenant, "run_evaluations", run_id="run-05"))
        assert normalised(one_run) == expected(ours, run_id="run-05")
        top = as_dicts(await ask(nc, tenant, "run_evaluations", limit=4))
        assert normalised(top) == want[:4]
        # Another tenant's scores stay theirs; a tenant without scores gets none.
        assert normalised(as_dicts(await ask(nc, tenant + "x", "run_evaluations"))) == expected(
            theirs
        )
        assert as_dicts(await ask(nc, tenant + "none", "run_evaluations")) == []
        # Bad parameters are a clear error, not rows.
        bad = await ask(nc, tenant, "run_evaluations", limit=0, colour="red")
        assert bad.rows == [] and bad.error is not None
        assert "limit" in bad.error and "colour" in bad.error
