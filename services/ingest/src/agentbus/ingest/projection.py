"""Domain events into graph facts: people, teams, repositories, skills and ownership.

A commit touching Rust files makes its author USE the skill Rust; retrieval weighs those edges by
count and recency. Each edge carries the event id and time, so a redelivered event is a no-op.

Recognised event types (others are left to analytics):
- `commit` / `change` / `push`: data `author` (name or {name, email, login}), `repository`,
  `files` (paths or {path}), optional `team`;
- `membership`: data `person`, `team`;
- `ownership`: data `repository` and `owner` (a person) or `team`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from agentbus.contracts import DomainEvent

from .knowledge_graph import GraphWriter

LANGUAGES = {
    ".rs": "Rust", ".py": "Python", ".go": "Go", ".ts": "TypeScript", ".tsx": "TypeScript",
    ".js": "JavaScript", ".jsx": "JavaScript", ".java": "Java", ".kt": "Kotlin", ".rb": "Ruby",
    ".c": "C", ".h": "C", ".cc": "C++", ".cpp": "C++", ".hpp": "C++", ".cs": "C#",
    ".swift": "Swift", ".scala": "Scala", ".sql": "SQL", ".tf": "Terraform", ".sh": "Shell",
    ".ex": "Elixir", ".exs": "Elixir", ".php": "PHP", ".dart": "Dart", ".zig": "Zig",
    ".hs": "Haskell", ".ml": "OCaml", ".lua": "Lua", ".r": "R", ".jl": "Julia",
}  # fmt: skip

COMMIT_TYPES = {"commit", "change", "push"}


def key(value: str) -> str:
    """The identity of a person, team, repository or skill: case- and space-insensitive."""
    return re.sub(r"\s+", " ", value.strip().lower())


def _name(value: Any) -> str | None:
    if isinstance(value, str) and value.strip():
        return value.strip()
    if isinstance(value, dict):
        for field in ("name", "login", "email"):
            if isinstance(value.get(field), str) and value[field].strip():
                return str(value[field]).strip()
    return None


def languages(files: Any) -> list[str]:
    paths = []
    for f in files if isinstance(files, list) else []:
        path = f.get("path") if isinstance(f, dict) else f
        if isinstance(path, str):
            paths.append(path)
    found = {LANGUAGES.get(PurePosixPath(p).suffix.lower()) for p in paths}
    return sorted(lang for lang in found if lang)


@dataclass(frozen=True)
class Projected:
    """What one event contributed, for logs and tests."""

    person: str | None = None
    repository: str | None = None
    skills: tuple[str, ...] = ()
    team: str | None = None
    kind: str = "ignored"


async def project(graph: GraphWriter, event: DomainEvent) -> Projected:
    data, t = event.data, event.tenant_id
    at = event.ts.timestamp()
    if event.type in COMMIT_TYPES:
        person = _name(data.get("author"))
        repo = _name(data.get("repository"))
        if person is None:
            return Projected(kind="ignored")
        skills = languages(data.get("files"))
        await graph.run(
            "MERGE (p:Person {tenant_id: $t, key: $pk}) ON CREATE SET p.name = $person",
            t=t,
            pk=key(person),
            person=person,
        )
        if skills:
            await graph.run(
                """
                MATCH (p:Person {tenant_id: $t, key: $pk})
                UNWIND $skills AS skill
                MERGE (s:Skill {tenant_id: $t, key: toLower(skill)}) ON CREATE SET s.name = skill
                MERGE (p)-[u:USED {event_id: $eid}]->(s) SET u.at = $at
                """,
                t=t,
                pk=key(person),
                skills=skills,
                eid=event.id,
                at=at,
            )
        if repo:
            await graph.run(
                """
                MATCH (p:Person {tenant_id: $t, key: $pk})
                MERGE (r:Repository {tenant_id: $t, key: $rk}) ON CREATE SET r.name = $repo
                MERGE (p)-[c:CONTRIBUTED {event_id: $eid}]->(r) SET c.at = $at
                """,
                t=t,
                pk=key(person),
                rk=key(repo),
                repo=repo,
                eid=event.id,
                at=at,
            )
        team = _name(data.get("team"))
        if team:
            await _member(graph, t, person, team)
        return Projected(person, repo, tuple(skills), team, kind="commit")
    if event.type == "membership":
        person, team = _name(data.get("person")), _name(data.get("team"))
        if person and team:
            await _member(graph, t, person, team)
            return Projected(person=person, team=team, kind="membership")
        return Projected()
    if event.type == "ownership":
        repo = _name(data.get("repository"))
        owner, team = _name(data.get("owner")), _name(data.get("team"))
        if not repo or not (owner or team):
            return Projected()
        label, name = ("Person", owner) if owner else ("Team", team)
        assert name is not None
        await graph.run(
            f"""
            MERGE (o:{label} {{tenant_id: $t, key: $ok}}) ON CREATE SET o.name = $name
            MERGE (r:Repository {{tenant_id: $t, key: $rk}}) ON CREATE SET r.name = $repo
            MERGE (o)-[:OWNS]->(r)
            """,
            t=t,
            ok=key(name),
            name=name,
            rk=key(repo),
            repo=repo,
        )
        return Projected(person=owner, repository=repo, team=team, kind="ownership")
    return Projected()


async def _member(graph: GraphWriter, tenant_id: str, person: str, team: str) -> None:
    await graph.run(
        """
        MERGE (p:Person {tenant_id: $t, key: $pk}) ON CREATE SET p.name = $person
        MERGE (m:Team {tenant_id: $t, key: $tk}) ON CREATE SET m.name = $team
        MERGE (p)-[:MEMBER_OF]->(m)
        """,
        t=tenant_id,
        pk=key(person),
        person=person,
        tk=key(team),
        team=team,
    )
