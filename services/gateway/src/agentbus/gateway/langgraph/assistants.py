"""Assistants of the LangGraph API: graphs learned from the orchestrator over the bus
(`agentbus.v1.graphs.describe`), assistants and their versions in PostgreSQL, per tenant.

Each graph has a default assistant whose id is LangGraph's `uuid5(NAMESPACE_GRAPH, graph_id)`
(created in a tenant's table the first time the tenant looks); the graph name is accepted
wherever an assistant id is. An assistant's `config` and `context` are merged under the run's
own when a run starts. Every change (PATCH) is a new version; `/latest` moves the assistant to
any earlier one.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

import asyncpg
from fastapi import HTTPException
from nats.aio.client import Client as NatsClient

from agentbus.contracts import (
    GRAPHS_DESCRIBE,
    GraphDescribeRequest,
    GraphDescription,
)
from agentbus.contracts.graphs import GraphAspect, GraphInfo
from agentbus.runtime.migrations import Migration
from agentbus.runtime.stores.schema import LockKey

from ..store import _row
from ..upstream import request_reply
from .lazy_schema import LazySchema

NAMESPACE_GRAPH = uuid.UUID("6ba7b821-9dad-11d1-80b4-00c04fd430c8")
# The graph list changes only when orchestrators restart with another config.
CATALOG_TTL_S = 5.0

SCHEMA = """
CREATE TABLE IF NOT EXISTS langgraph_assistants (
    tenant_id    text NOT NULL,
    assistant_id text NOT NULL,
    graph_id     text NOT NULL,
    name         text NOT NULL,
    description  text,
    config       jsonb NOT NULL DEFAULT '{}',
    context      jsonb NOT NULL DEFAULT '{}',
    metadata     jsonb NOT NULL DEFAULT '{}',
    version      integer NOT NULL DEFAULT 1,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, assistant_id)
);
CREATE INDEX IF NOT EXISTS langgraph_assistants_metadata
    ON langgraph_assistants USING gin (metadata);
CREATE TABLE IF NOT EXISTS langgraph_assistant_versions (
    tenant_id    text NOT NULL,
    assistant_id text NOT NULL,
    version      integer NOT NULL,
    graph_id     text NOT NULL,
    name         text NOT NULL,
    description  text,
    config       jsonb NOT NULL DEFAULT '{}',
    context      jsonb NOT NULL DEFAULT '{}',
    metadata     jsonb NOT NULL DEFAULT '{}',
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, assistant_id, version),
    FOREIGN KEY (tenant_id, assistant_id) REFERENCES langgraph_assistants ON DELETE CASCADE
);
"""

MIGRATIONS = (Migration(1, "assistants and their versions", (SCHEMA,)),)

FIELDS = (
    "assistant_id",
    "graph_id",
    "name",
    "description",
    "config",
    "context",
    "metadata",
    "version",
    "created_at",
    "updated_at",
)
SORTABLE = {"assistant_id", "graph_id", "name", "created_at", "updated_at"}


def default_assistant_id(graph_id: str) -> str:
    return str(uuid.uuid5(NAMESPACE_GRAPH, graph_id))


def merge_config(base: dict[str, Any], run: dict[str, Any] | None) -> dict[str, Any]:
    """The run's config over the assistant's; `configurable` merged key by key."""
    run = run or {}
    merged = {**base, **run}
    configurable = {**(base.get("configurable") or {}), **(run.get("configurable") or {})}
    if configurable:
        merged["configurable"] = configurable
    return merged


def _decode(row: dict[str, Any] | None) -> dict[str, Any] | None:
    if row is None:
        return None
    out = {k: row[k] for k in FIELDS if k in row}
    for key in ("config", "context", "metadata"):
        if isinstance(out.get(key), str):
            out[key] = json.loads(out[key])
    for key in ("created_at", "updated_at"):
        if key in out and hasattr(out[key], "isoformat"):
            out[key] = out[key].isoformat()
    return out


class GraphCatalog:
    """The orchestrators' graphs, asked over the bus and kept a few seconds."""

    def __init__(self, nc: NatsClient) -> None:
        self.nc = nc
        self._graphs: dict[str, GraphInfo] = {}
        self._at = 0.0
        self._lock = asyncio.Lock()

    async def ask(
        self, tenant_id: str, aspect: GraphAspect, graph_id: str | None = None, **fields: Any
    ) -> GraphDescription:
        req = GraphDescribeRequest(tenant_id=tenant_id, aspect=aspect, graph_id=graph_id, **fields)
        try:
            return await request_reply(
                self.nc,
                GRAPHS_DESCRIBE,
                req,
                GraphDescription,
                f"Graph {graph_id!r}",
                timeout=10,
                refusals={"not_found": 404},
                failure_status=424,
            )
        except HTTPException as exc:
            if exc.status_code == 404:
                raise HTTPException(404, f"Graph {graph_id!r} not found") from None
            raise

    async def graphs(self, tenant_id: str, *, fresh: bool = False) -> dict[str, GraphInfo]:
        if not fresh and self._graphs and time.monotonic() - self._at < CATALOG_TTL_S:
            return self._graphs
        async with self._lock:
            if fresh or not self._graphs or time.monotonic() - self._at >= CATALOG_TTL_S:
                described = await self.ask(tenant_id, "list")
                self._graphs = {g.graph_id: g for g in described.graphs}
                self._at = time.monotonic()
        return self._graphs

    async def require(self, tenant_id: str, graph_id: str) -> GraphInfo:
        graphs = await self.graphs(tenant_id)
        if graph_id not in graphs:
            graphs = await self.graphs(tenant_id, fresh=True)
        if graph_id not in graphs:
            raise HTTPException(
                404, f"Graph {graph_id!r} not found; served: {', '.join(sorted(graphs))}"
            )
        return graphs[graph_id]


class Assistants:
    def __init__(self, pool: asyncpg.Pool, catalog: GraphCatalog) -> None:
        self.pool = pool
        self.catalog = catalog
        self._schema = LazySchema(pool, MIGRATIONS, LockKey.LANGGRAPH_ASSISTANTS)
        self._defaults: set[tuple[str, str]] = set()

    async def ready(self) -> None:
        await self._schema.ensure()

    async def served(self, tenant_id: str) -> dict[str, GraphInfo]:
        """The served graphs, each with its default assistant in the tenant's table."""
        await self.ready()
        graphs = await self.catalog.graphs(tenant_id)
        missing = [g for g in graphs.values() if (tenant_id, g.graph_id) not in self._defaults]
        for graph in missing:
            await self._insert(
                tenant_id,
                default_assistant_id(graph.graph_id),
                graph.graph_id,
                name=graph.name or graph.graph_id,
                description=graph.description,
                config={},
                context={},
                metadata={"created_by": "system"},
                if_exists="do_nothing",
            )
            self._defaults.add((tenant_id, graph.graph_id))
        return graphs

    async def _insert(
        self,
        tenant_id: str,
        assistant_id: str,
        graph_id: str,
        *,
        name: str,
        description: str | None,
        config: dict[str, Any],
        context: dict[str, Any],
        metadata: dict[str, Any],
        if_exists: str,
    ) -> dict[str, Any]:
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                "INSERT INTO langgraph_assistants (tenant_id, assistant_id, graph_id, name,"
                " description, config, context, metadata) VALUES ($1,$2,$3,$4,$5,$6,$7,$8)"
                " ON CONFLICT DO NOTHING RETURNING *",
                tenant_id,
                assistant_id,
                graph_id,
                name,
                description,
                json.dumps(config),
                json.dumps(context),
                json.dumps(metadata),
            )
            if row is None:
                if if_exists == "raise":
                    raise HTTPException(409, f"Assistant {assistant_id!r} already exists")
                existing = await conn.fetchrow(
                    "SELECT * FROM langgraph_assistants WHERE tenant_id=$1 AND assistant_id=$2",
                    tenant_id,
                    assistant_id,
                )
                result = _decode(_row(existing))
                assert result is not None
                return result
            await conn.execute(
                "INSERT INTO langgraph_assistant_versions (tenant_id, assistant_id, version,"
                " graph_id, name, description, config, context, metadata, created_at)"
                " SELECT tenant_id, assistant_id, version, graph_id, name, description, config,"
                " context, metadata, created_at FROM langgraph_assistants"
                " WHERE tenant_id = $1 AND assistant_id = $2",
                tenant_id,
                assistant_id,
            )
        created = _decode(_row(row))
        assert created is not None
        return created

    def _id(self, assistant_id: str, graphs: dict[str, GraphInfo]) -> str:
        return default_assistant_id(assistant_id) if assistant_id in graphs else assistant_id

    async def get(self, tenant_id: str, assistant_id: str) -> dict[str, Any]:
        graphs = await self.served(tenant_id)
        row = await self.pool.fetchrow(
            "SELECT * FROM langgraph_assistants WHERE tenant_id = $1 AND assistant_id = $2",
            tenant_id,
            self._id(assistant_id, graphs),
        )
        found = _decode(_row(row))
        if found is None:
            raise HTTPException(404, f"Assistant {assistant_id!r} not found")
        return found

    async def resolve(self, tenant_id: str, assistant_id: str) -> dict[str, Any]:
        """The assistant a run uses; 404 also when its graph is no longer served."""
        found = await self.get(tenant_id, assistant_id)
        graphs = await self.catalog.graphs(tenant_id)
        if found["graph_id"] not in graphs:
            raise HTTPException(
                404, f"Graph {found['graph_id']!r} of assistant {assistant_id!r} is not served"
            )
        return found

    async def create(self, tenant_id: str, body: Any) -> dict[str, Any]:
        await self.served(tenant_id)
        graph = await self.catalog.require(tenant_id, body.graph_id)
        return await self._insert(
            tenant_id,
            body.assistant_id or str(uuid.uuid4()),
            graph.graph_id,
            name=body.name or "Untitled",
            description=body.description,
            config=body.config or {},
            context=body.context or {},
            metadata=body.metadata or {},
            if_exists=body.if_exists,
        )

    async def patch(self, tenant_id: str, assistant_id: str, body: Any) -> dict[str, Any]:
        current = await self.get(tenant_id, assistant_id)
        if body.graph_id is not None:
            await self.catalog.require(tenant_id, body.graph_id)
        aid = current["assistant_id"]
        async with self.pool.acquire() as conn, conn.transaction():
            version = await conn.fetchval(
                "SELECT coalesce(max(version), 0) + 1 FROM langgraph_assistant_versions"
                " WHERE tenant_id = $1 AND assistant_id = $2",
                tenant_id,
                aid,
            )
            values = (
                tenant_id,
                aid,
                version,
                body.graph_id or current["graph_id"],
                body.name if body.name is not None else current["name"],
                body.description if body.description is not None else current["description"],
                json.dumps(body.config if body.config is not None else current["config"]),
                json.dumps(body.context if body.context is not None else current["context"]),
                json.dumps({**current["metadata"], **(body.metadata or {})}),
            )
            await conn.execute(
                "INSERT INTO langgraph_assistant_versions (tenant_id, assistant_id, version,"
                " graph_id, name, description, config, context, metadata)"
                " VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9)",
                *values,
            )
            row = await conn.fetchrow(
                "UPDATE langgraph_assistants SET version=$3, graph_id=$4, name=$5,"
                " description=$6, config=$7, context=$8, metadata=$9, updated_at=now()"
                " WHERE tenant_id=$1 AND assistant_id=$2 RETURNING *",
                *values,
            )
        patched = _decode(_row(row))
        assert patched is not None
        return patched

    async def delete(self, tenant_id: str, assistant_id: str) -> None:
        current = await self.get(tenant_id, assistant_id)
        if current["assistant_id"] == default_assistant_id(current["graph_id"]):
            raise HTTPException(
                409,
                f"Assistant {assistant_id!r} is the default assistant of graph "
                f"{current['graph_id']!r}; it exists as long as the graph is served",
            )
        await self.pool.execute(
            "DELETE FROM langgraph_assistants WHERE tenant_id = $1 AND assistant_id = $2",
            tenant_id,
            current["assistant_id"],
        )

    async def search(
        self,
        tenant_id: str,
        *,
        metadata: dict[str, Any] | None,
        graph_id: str | None,
        name: str | None,
        limit: int | None = None,
        offset: int = 0,
        sort_by: str | None = None,
        sort_order: str | None = None,
    ) -> list[dict[str, Any]]:
        graphs = await self.served(tenant_id)
        column = sort_by if sort_by in SORTABLE else "created_at"  # whitelisted: no injection
        order = "ASC" if sort_order == "asc" else "DESC"
        what = "count(*)" if limit is None else "*"
        tail = (
            "" if limit is None else f" ORDER BY {column} {order}, assistant_id LIMIT $6 OFFSET $7"
        )
        args: list[Any] = [
            tenant_id,
            list(graphs),
            json.dumps(metadata) if metadata else None,
            graph_id,
            f"%{name}%" if name else None,
        ]
        if limit is not None:
            args += [limit, offset]
        rows = await self.pool.fetch(
            f"SELECT {what} FROM langgraph_assistants WHERE tenant_id = $1"
            " AND graph_id = ANY($2::text[])"
            " AND ($3::jsonb IS NULL OR metadata @> $3::jsonb)"
            " AND ($4::text IS NULL OR graph_id = $4)"
            " AND ($5::text IS NULL OR name ILIKE $5)" + tail,
            *args,
        )
        if limit is None:
            return [{"count": rows[0][0]}]
        return [a for a in (_decode(_row(r)) for r in rows) if a is not None]

    async def count(
        self,
        tenant_id: str,
        *,
        metadata: dict[str, Any] | None,
        graph_id: str | None,
        name: str | None,
    ) -> int:
        rows = await self.search(tenant_id, metadata=metadata, graph_id=graph_id, name=name)
        return int(rows[0]["count"])

    async def versions(
        self,
        tenant_id: str,
        assistant_id: str,
        metadata: dict[str, Any] | None,
        limit: int,
        offset: int,
    ) -> list[dict[str, Any]]:
        current = await self.get(tenant_id, assistant_id)
        rows = await self.pool.fetch(
            "SELECT * FROM langgraph_assistant_versions WHERE tenant_id = $1"
            " AND assistant_id = $2 AND ($3::jsonb IS NULL OR metadata @> $3::jsonb)"
            " ORDER BY version DESC LIMIT $4 OFFSET $5",
            tenant_id,
            current["assistant_id"],
            json.dumps(metadata) if metadata else None,
            limit,
            offset,
        )
        return [v for v in (_decode(_row(r)) for r in rows) if v is not None]

    async def set_latest(self, tenant_id: str, assistant_id: str, version: int) -> dict[str, Any]:
        current = await self.get(tenant_id, assistant_id)
        row = await self.pool.fetchrow(
            "UPDATE langgraph_assistants a SET version = v.version, graph_id = v.graph_id,"
            " name = v.name, description = v.description, config = v.config,"
            " context = v.context, metadata = v.metadata, updated_at = now()"
            " FROM langgraph_assistant_versions v"
            " WHERE a.tenant_id = $1 AND a.assistant_id = $2 AND v.tenant_id = a.tenant_id"
            " AND v.assistant_id = a.assistant_id AND v.version = $3 RETURNING a.*",
            tenant_id,
            current["assistant_id"],
            version,
        )
        found = _decode(_row(row))
        if found is None:
            raise HTTPException(404, f"Version {version} of assistant {assistant_id!r} not found")
        return found

    async def describe(
        self, tenant_id: str, assistant_id: str, aspect: GraphAspect, **fields: Any
    ) -> Any:
        current = await self.resolve(tenant_id, assistant_id)
        described = await self.catalog.ask(
            tenant_id,
            aspect,
            current["graph_id"],
            config=dict(current["config"] or {}),
            **fields,
        )
        return described.detail
