"""DORA four keys over 1,000 synthetic domain events, checked against plain Python."""

from __future__ import annotations

import random
import statistics
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from nats.aio.client import Client as NatsClient

from agentbus.analytics.app import build
from agentbus.analytics.settings import AnalyticsSettings
from agentbus.contracts import DomainEvent, new_id
from agentbus.contracts import subjects as s
from agentbus.runtime.testing import running

from .support import as_dicts, ask, eventually

HOUR = 3600.0


@dataclass
class World:
    """Synthetic events and the DORA numbers computed from them without ClickHouse."""

    tenant: str
    since: datetime
    until: datetime
    events: list[DomainEvent] = field(default_factory=list)
    commits: dict[str, datetime] = field(default_factory=dict)
    deployments: list[tuple[str, str, datetime, list[str], bool]] = field(default_factory=list)
    incidents: list[tuple[str, str, datetime, datetime | None, str]] = field(default_factory=list)

    def add(self, source: str, type_: str, ts: datetime, data: dict[str, Any]) -> None:
        self.events.append(
            DomainEvent(tenant_id=self.tenant, source=source, type=type_, ts=ts, data=data)
        )

    def expected(self) -> dict[str, dict[str, Any]]:
        days = (self.until - self.since).total_seconds() / 86400
        in_period = [d for d in self.deployments if self.since <= d[2] < self.until]
        caused = {inc[4] for inc in self.incidents if inc[4]}
        first: dict[tuple[str, str], datetime] = {}
        for service, _, ts, shas, _ in self.deployments:
            for sha in shas:
                key = (service, sha)
                first[key] = min(first.get(key, ts), ts)
        out: dict[str, dict[str, Any]] = {}
        for service in sorted({d[0] for d in self.deployments} | {i[0] for i in self.incidents}):
            deps = [d for d in in_period if d[0] == service]
            failed = [d for d in deps if d[4] or d[1] in caused]
            leads = [
                (deployed - self.commits[sha]).total_seconds() / HOUR
                for (svc, sha), deployed in first.items()
                if svc == service
                and sha in self.commits
                and self.since <= deployed < self.until
                and deployed >= self.commits[sha]
            ]
            opened = [
                i for i in self.incidents if i[0] == service and self.since <= i[2] < self.until
            ]
            restores = [(i[3] - i[2]).total_seconds() / HOUR for i in opened if i[3] is not None]
            out[service] = {
                "deployments": len(deps),
                "deployments_per_day": len(deps) / days,
                "lead_time_hours_mean": statistics.fmean(leads) if leads else None,
                "lead_time_hours_p50": statistics.median(leads) if leads else None,
                "changes": len(leads),
                "failed_deployments": len(failed),
                "change_failure_rate": len(failed) / len(deps) if deps else None,
                "incidents": len(opened),
                "restored": len(restores),
                "time_to_restore_hours_mean": statistics.fmean(restores) if restores else None,
                "time_to_restore_hours_p50": statistics.median(restores) if restores else None,
            }
        return out


def synthesize(tenant: str, services: list[str], total: int, seed: int) -> World:
    """`total` commit/deployment/incident events over three weeks; the period is the last two.

    Shapes vary on purpose: `commit` and `change`, `commits` lists and a single `commit_sha`,
    `incident` with a status and `incident_opened`/`incident_resolved`, failed deployments and
    deployments named by an incident.
    """
    rng = random.Random(seed)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    world = World(tenant, since=start + timedelta(days=7), until=start + timedelta(days=21))
    pending: dict[str, list[str]] = {svc: [] for svc in services}
    while len(world.events) < total:
        service = rng.choice(services)
        ts = start + timedelta(seconds=rng.randrange(0, 21 * 86400))
        roll = rng.random()
        if roll < 0.6 or not pending[service]:
            sha = new_id()[:12]
            committed = ts - timedelta(seconds=rng.randrange(0, 3 * 86400))
            world.commits[sha] = committed
            pending[service].append(sha)
            if rng.random() < 0.5:
                commit = {"sha": sha, "service": service, "committed_at": committed.isoformat()}
                world.add("git", rng.choice(["commit", "change"]), ts, commit)
            else:  # no committed_at: the event time is the commit time
                world.commits[sha] = ts
                world.add("git", "commit", ts, {"sha": sha, "repository": service})
        elif roll < 0.85 or len(world.events) > total - 2:
            shas, pending[service] = pending[service][:3], pending[service][3:]
            failed = rng.random() < 0.1
            dep_id = f"dep-{new_id()[:8]}"
            data: dict[str, Any] = {"service": service, "deployment_id": dep_id}
            if len(shas) == 1 and rng.random() < 0.5:
                data["commit_sha"] = shas[0]
            else:
                data["commits"] = shas
            if failed:
                data["status"] = "failed"
            world.deployments.append((service, dep_id, ts, shas, failed))
            world.add("ci", "deployment", ts, data)
        else:
            incident_id = f"inc-{new_id()[:8]}"
            ours = [d[1] for d in world.deployments if d[0] == service]
            cause = rng.choice(ours) if ours and rng.random() < 0.5 else ""
            resolved = ts + timedelta(seconds=rng.randrange(600, 2 * 86400))
            pair = rng.random() < 0.5
            base = {"incident_id": incident_id, "service": service}
            if cause:
                base["deployment_id"] = cause
            if pair:
                world.add("pager", "incident_opened", ts, base)
            else:
                world.add("pager", "incident", ts, {**base, "status": "open"})
            if len(world.events) < total and rng.random() < 0.9:
                if pair:
                    world.add("pager", "incident_resolved", resolved, base)
                else:
                    world.add("pager", "incident", resolved, {**base, "status": "resolved"})
                world.incidents.append((service, incident_id, ts, resolved, cause))
            else:
                world.incidents.append((service, incident_id, ts, None, cause))
    return world


def check(rows: list[dict[str, Any]], expected: dict[str, dict[str, Any]]) -> None:
    got = {r["service"]: r for r in rows if r["service"] != "*"}
    assert set(got) == set(expected)
    for service, want in expected.items():
        for key, value in want.items():
            if value is None:
                assert got[service][key] is None, (service, key)
            else:
                assert got[service][key] == pytest.approx(value, rel=1e-5, abs=1e-5), (
                    service,
                    key,
                    got[service][key],
                    value,
                )


async def _matches(nc: NatsClient, tenant: str, period: dict[str, str], world: World) -> bool:
    try:
        check(as_dicts(await ask(nc, tenant, "dora", **period)), world.expected())
    except AssertionError:
        return False
    return True


async def publish(nc: NatsClient, events: list[DomainEvent]) -> None:
    js = nc.jetstream()
    for event in events:
        subject = s.domain_event(event.tenant_id, event.source, event.type)
        await js.publish(subject, event.model_dump_json().encode())


async def test_dora_matches_independent_computation_and_is_tenant_scoped(
    analytics_env: dict[str, str], nc: NatsClient, tenant: str
) -> None:
    world_a = synthesize(tenant, ["api", "web"], 1000, seed=7)
    world_b = synthesize(tenant + "b", ["billing"], 60, seed=8)
    assert len(world_a.events) == 1000
    await publish(nc, world_a.events + world_b.events)
    period = {"since": world_a.since.isoformat(), "until": world_a.until.isoformat()}

    service = build(AnalyticsSettings())
    async with running(service):
        wide = {"since": "2025-12-01T00:00:00Z", "until": "2026-02-01T00:00:00Z"}

        async def all_stored() -> bool:
            rows = as_dicts(await ask(nc, tenant, "dora", **wide))
            total = next((r for r in rows if r["service"] == "*"), None)
            return total is not None and (total["deployments"], total["incidents"]) == (
                len(world_a.deployments),
                len(world_a.incidents),
            )

        await eventually(all_stored, what="1,000 events stored")
        await eventually(
            lambda: _matches(nc, tenant + "b", period, world_b), what="tenant b's events"
        )

        result = await ask(nc, tenant, "dora", **period)
        check(as_dicts(result), world_a.expected())
        overall = next(r for r in as_dicts(result) if r["service"] == "*")
        assert overall["deployments"] == sum(v["deployments"] for v in world_a.expected().values())
        one = as_dicts(await ask(nc, tenant, "dora", service="api", **period))
        check(one, {"api": world_a.expected()["api"]})

        rows_b = as_dicts(await ask(nc, tenant + "b", "dora", **period))
        assert {r["service"] for r in rows_b} <= {"billing", "*"}
        check(rows_b, world_b.expected())
        # A tenant with no events sees nothing at all.
        assert as_dicts(await ask(nc, tenant + "c", "dora", **period)) == []
