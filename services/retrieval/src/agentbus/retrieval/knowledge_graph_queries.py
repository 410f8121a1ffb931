"""Named, parameterised graph queries. Callers (and models) pick a name and give parameters;
they never send Cypher. Every query is scoped to the request's tenant.

Skill and ownership strength weighs each contributing event by recency: an event `age` seconds
old counts 1 / (1 + age / 30 days), so recent work outranks old work without forgetting it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from neo4j import AsyncDriver
from opentelemetry.trace import SpanKind

from agentbus.contracts import GraphQuery, GraphResult
from agentbus.contracts.retrieval import GraphQueryName
from agentbus.runtime.stores.knowledge_graph import inline_parameters
from agentbus.runtime.traces import tracer

DECAY_S = 30 * 24 * 3600.0


def _key(value: Any) -> str:
    return " ".join(str(value).split()).lower()


class BadGraphQuery(ValueError):
    pass


@dataclass(frozen=True)
class Named:
    cypher: str
    params: dict[str, Callable[[Any], Any]]  # name -> normaliser; all required


QUERIES: dict[GraphQueryName, Named] = {
    "people_by_skill": Named(
        """
        MATCH (p:Person {tenant_id: $t})-[u:USED]->(s:Skill {tenant_id: $t, key: $skill})
        RETURN p.name AS person, s.name AS skill, count(u) AS events, max(u.at) AS last_at,
               sum(1.0 / (1.0 + ($now - u.at) / $decay)) AS weight
        ORDER BY weight DESC, person LIMIT $limit
        """,
        {"skill": _key},
    ),
    "owners_of": Named(
        """
        MATCH (r:Repository {tenant_id: $t, key: $repository})
        OPTIONAL MATCH (o)-[:OWNS]->(r)
        OPTIONAL MATCH (p:Person {tenant_id: $t})-[c:CONTRIBUTED]->(r)
        WITH r, collect(DISTINCT o.name) AS owners, p, c
        WITH r, owners, p.name AS person, count(c) AS events,
             sum(1.0 / (1.0 + ($now - c.at) / $decay)) AS weight
        RETURN r.name AS repository, owners, person, events, weight
        ORDER BY weight DESC, person LIMIT $limit
        """,
        {"repository": _key},
    ),
    # A person's profile for the resource planner and 1:1 prep: what they know, where they work.
    "skills_of": Named(
        """
        MATCH (p:Person {tenant_id: $t, key: $person})-[u:USED]->(s:Skill {tenant_id: $t})
        RETURN p.name AS person, s.name AS skill, count(u) AS events, max(u.at) AS last_at,
               sum(1.0 / (1.0 + ($now - u.at) / $decay)) AS weight
        ORDER BY weight DESC, skill LIMIT $limit
        """,
        {"person": _key},
    ),
    "work_of": Named(
        """
        MATCH (p:Person {tenant_id: $t, key: $person})-[c:CONTRIBUTED]->
              (r:Repository {tenant_id: $t})
        OPTIONAL MATCH (p)-[:MEMBER_OF]->(team:Team {tenant_id: $t})
        OPTIONAL MATCH (o)-[:OWNS]->(r)
        WITH p, r, c, collect(DISTINCT team.name) AS teams, collect(DISTINCT o.name) AS owners
        RETURN p.name AS person, r.name AS repository, count(c) AS events, max(c.at) AS last_at,
               sum(1.0 / (1.0 + ($now - c.at) / $decay)) AS weight, owners, teams
        ORDER BY weight DESC, repository LIMIT $limit
        """,
        {"person": _key},
    ),
    "entity_neighbourhood": Named(
        """
        MATCH (e:Entity {tenant_id: $t, key: $entity})-[r:RELATED]-(o:Entity {tenant_id: $t})
        RETURN e.name AS entity, o.name AS related, o.kind AS kind, sum(r.weight) AS weight,
               count(DISTINCT r.document_id) AS documents
        ORDER BY weight DESC, related LIMIT $limit
        """,
        {"entity": _key},
    ),
    "documents_mentioning": Named(
        """
        MATCH (d:Document {tenant_id: $t})-[:HAS_CHUNK]->(c:Chunk)-[m:MENTIONS]->
              (e:Entity {tenant_id: $t, key: $entity})
        RETURN d.document_id AS document_id, d.title AS title, count(c) AS chunks,
               sum(m.count) AS mentions, collect(DISTINCT c.page) AS pages
        ORDER BY mentions DESC, document_id LIMIT $limit
        """,
        {"entity": _key},
    ),
}


class GraphQueries:
    def __init__(self, driver: AsyncDriver) -> None:
        self.driver = driver

    async def run(self, req: GraphQuery) -> GraphResult:
        started = time.perf_counter()
        named = QUERIES[req.name]
        missing = [p for p in named.params if p not in req.params]
        unknown = [p for p in req.params if p not in named.params]
        if missing or unknown:
            raise BadGraphQuery(
                f"{req.name} takes parameters {sorted(named.params)}; "
                f"missing {missing or 'none'}, unknown {unknown or 'none'}"
            )
        params = {name: norm(req.params[name]) for name, norm in named.params.items()}
        # A client span per graph query (OTel database conventions): the named query, not the
        # Cypher text. The system is what the server's Bolt agent string names (neo4j if none;
        # the embedded FalkorDB's Bolt listener also answers as Neo4j).
        with tracer().start_as_current_span(
            f"graph.query {req.name}",
            kind=SpanKind.CLIENT,
            attributes={
                "db.system.name": "neo4j",
                "db.operation.name": "MATCH",
                "db.query.summary": req.name,
                "agentbus.graph.query": req.name,
            },
        ) as span:
            # Values as escaped literals, never Bolt parameters: FalkorDB splices parameters
            # unescaped, so an entity named `x' t='other` read another tenant's graph.
            records, summary, _ = await self.driver.execute_query(
                inline_parameters(
                    named.cypher,
                    {
                        **params,
                        "t": req.tenant_id,
                        "limit": req.limit,
                        "now": time.time(),
                        "decay": DECAY_S,
                    },
                )
            )
            agent = str(getattr(summary.server, "agent", "") or "")
            if agent:
                span.set_attribute("db.system.name", agent.split("/", 1)[0].lower())
            span.set_attribute("db.response.returned_rows", len(records))
        rows = [_plain(r.data()) for r in records]
        return GraphResult(
            tenant_id=req.tenant_id,
            name=req.name,
            rows=rows,
            took_ms=(time.perf_counter() - started) * 1e3,
        )


def _plain(row: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in row.items():
        if isinstance(v, list):
            out[k] = [x for x in v if x is not None]
        else:
            out[k] = v
    return out
