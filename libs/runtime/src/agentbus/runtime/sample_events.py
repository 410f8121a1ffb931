"""The sample organisation's domain events: a quarter of an engineering team's work, as the git
host, the deployment pipeline, the incident tool and HR would report it.

Deterministic: the same organisation, seed and end time give the same events with the same ids,
so publishing them again stores nothing new (analytics keeps one row per event id, the graph
projection merges on the event id, and JetStream drops a repeated `Nats-Msg-Id`).

The shapes are the ones analytics' DORA reading and ingest's graph projection accept:
- `git.commit`: `sha`, `author` ({name, email}), `repository`, `service`, `files`, `team`,
  `committed_at`: a commit touching `.rs` files makes its author know Rust in the graph;
- `shipit.deployment`: `service`, `deployment_id`, `commits` (the shas it ships), `status`;
- `pagerduty.incident`: `incident_id`, `service`, `status` open then resolved, and the
  `deployment_id` that caused it (a change failure);
- `hr.membership` (`person`, `team`) and `git.ownership` (`repository`, `team`).
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from agentbus.contracts import DomainEvent

ID_PREFIX = "sample-"  # every sample event id starts with it (removal finds them by it)


@dataclass(frozen=True)
class Person:
    name: str
    email: str
    team: str
    commits_per_week: float
    repositories: tuple[str, ...]


@dataclass(frozen=True)
class Repository:
    name: str
    team: str
    deploys_per_week: float
    files: tuple[str, ...]


@dataclass(frozen=True)
class Organisation:
    name: str
    seed: int
    days: int
    teams: tuple[str, ...]
    repositories: tuple[Repository, ...]
    people: tuple[Person, ...]
    incident_rate: float
    failed_deployment_rate: float

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Organisation:
        repos = tuple(
            Repository(name, r["team"], float(r["deploys_per_week"]), tuple(r["files"]))
            for name, r in raw["repositories"].items()
        )
        people = tuple(
            Person(
                p["name"],
                p["email"],
                p["team"],
                float(p["commits_per_week"]),
                tuple(p["repositories"]),
            )
            for p in raw["people"]
        )
        org = cls(
            name=raw["name"],
            seed=int(raw["seed"]),
            days=int(raw["days"]),
            teams=tuple(raw["teams"]),
            repositories=repos,
            people=people,
            incident_rate=float(raw["incident_rate"]),
            failed_deployment_rate=float(raw["failed_deployment_rate"]),
        )
        org.check()
        return org

    def check(self) -> None:
        """A broken sample file is an error that names the problem, not half a load."""
        names = {r.name for r in self.repositories}
        for repo in self.repositories:
            if repo.team not in self.teams:
                raise ValueError(f"repository {repo.name}: unknown team {repo.team!r}")
        for person in self.people:
            if person.team not in self.teams:
                raise ValueError(f"{person.name}: unknown team {person.team!r}")
            for repo_name in person.repositories:
                if repo_name not in names:
                    raise ValueError(f"{person.name}: unknown repository {repo_name!r}")
        if not 1 <= self.days <= 366:
            raise ValueError("days must be between 1 and 366")


@dataclass
class SampleEvents:
    events: list[DomainEvent] = field(default_factory=list)
    commits: int = 0
    deployments: int = 0
    failed_deployments: int = 0
    incidents: int = 0


def _sha(seed: int, *parts: object) -> str:
    return hashlib.sha1(":".join(map(str, (seed, *parts))).encode()).hexdigest()


def _iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def generate(org: Organisation, tenant_id: str, end: datetime) -> SampleEvents:
    """Every event of the sample quarter ending at `end` (an aware UTC time), oldest first."""
    rng = random.Random(org.seed)
    out = SampleEvents()
    start = end - timedelta(days=org.days)

    def add(source: str, type_: str, key: str, ts: datetime, data: dict[str, Any]) -> None:
        out.events.append(
            DomainEvent(
                tenant_id=tenant_id,
                id=f"{ID_PREFIX}{source}-{type_}-{key}",
                ts=ts,
                source=source,
                type=type_,
                data=data,
            )
        )

    for person in org.people:
        add("hr", "membership", _sha(org.seed, person.name)[:16], start, {
            "person": person.name, "team": person.team})  # fmt: skip
    for repo in org.repositories:
        add("git", "ownership", repo.name, start, {"repository": repo.name, "team": repo.team})

    repos = {r.name: r for r in org.repositories}
    pending: dict[str, list[tuple[datetime, str]]] = {r.name: [] for r in org.repositories}
    timed: list[tuple[datetime, int, str, str, str, dict[str, Any]]] = []
    order = 0
    for day in range(1, org.days):  # day 0 is the quarter's start: teams and owners
        date = start + timedelta(days=day)
        if date.weekday() >= 5:  # weekends are quiet
            continue
        for person in org.people:
            for _ in range(_count(rng, person.commits_per_week / 5)):
                repo = repos[rng.choice(person.repositories)]
                at = date.replace(hour=9, minute=0, second=0, microsecond=0) + timedelta(
                    minutes=rng.randrange(0, 8 * 60)
                )
                sha = _sha(org.seed, "commit", person.name, at.isoformat(), order)
                files = rng.sample(repo.files, k=min(len(repo.files), rng.randint(1, 3)))
                pending[repo.name].append((at, sha))
                order += 1
                timed.append((at, order, "git", "commit", sha[:16], {
                    "sha": sha, "author": {"name": person.name, "email": person.email},
                    "repository": repo.name, "service": repo.name, "team": person.team,
                    "files": files, "committed_at": _iso(at),
                    "message": f"{repo.name}: change {sha[:7]}"}))  # fmt: skip
        for repo in org.repositories:
            if rng.random() >= repo.deploys_per_week / 5:
                continue
            at = date.replace(hour=16, minute=0, second=0, microsecond=0) + timedelta(
                minutes=rng.randrange(0, 90)
            )
            shipped = [sha for when, sha in pending[repo.name] if when < at]
            if not shipped:
                continue
            pending[repo.name] = [(w, s) for w, s in pending[repo.name] if w >= at]
            deployment_id = f"{repo.name}-{at:%Y%m%d%H%M}"
            failed = rng.random() < org.failed_deployment_rate
            order += 1
            out.deployments += 1
            out.failed_deployments += failed
            timed.append((at, order, "shipit", "deployment", deployment_id, {
                "deployment_id": deployment_id, "service": repo.name, "commits": shipped,
                "status": "failed" if failed else "success",
                "environment": "production"}))  # fmt: skip
            if failed or rng.random() < org.incident_rate:
                opened = at + timedelta(minutes=rng.randint(10, 45))
                resolved = opened + timedelta(minutes=rng.randint(25, 300))
                if resolved >= end:
                    continue
                incident_id = f"INC-{_sha(org.seed, deployment_id)[:6].upper()}"
                base = {
                    "incident_id": incident_id,
                    "service": repo.name,
                    "deployment_id": deployment_id,
                    "title": f"{repo.name} errors after deployment {deployment_id}",
                }
                out.incidents += 1
                order += 1
                timed.append((opened, order, "pagerduty", "incident", f"{incident_id}-open",
                              {**base, "status": "open"}))  # fmt: skip
                order += 1
                timed.append((resolved, order, "pagerduty", "incident", f"{incident_id}-resolved",
                              {**base, "status": "resolved"}))  # fmt: skip
    for at, _, source, type_, key, data in sorted(timed, key=lambda t: (t[0], t[1])):
        if at < end:
            add(source, type_, key, at, data)
            out.commits += type_ == "commit"
    return out


def _count(rng: random.Random, mean: float) -> int:
    """A small non-negative count with the given mean (whole part plus a coin for the rest)."""
    whole = int(mean)
    return whole + (1 if rng.random() < mean - whole else 0)
