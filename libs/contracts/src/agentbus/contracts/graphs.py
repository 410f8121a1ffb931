"""The graphs an orchestrator hosts, as the gateway learns them (request/reply): their ids and
descriptions, and on demand a graph's drawing, JSON schemas or subgraphs. The gateway keeps
no list of its own."""

from __future__ import annotations

from typing import Final, Literal

from pydantic import Field

from .base import Contract, JsonObject, TenantContract
from .subjects import PREFIX

GRAPHS_DESCRIBE: Final = f"{PREFIX}.graphs.describe"

GraphAspect = Literal["list", "graph", "schemas", "subgraphs"]


class GraphDescribeRequest(TenantContract):
    """`list`: every graph. `graph`: the drawable graph (`xray`: subgraphs' nodes too, or how
    many levels). `schemas`: input/output/state/config/context JSON schemas. `subgraphs`: the
    schemas of each subgraph (under `namespace`; `recurse` for nested ones)."""

    aspect: GraphAspect = "list"
    graph_id: str | None = Field(default=None, min_length=1, max_length=128)
    xray: bool | int = False
    namespace: str | None = Field(default=None, max_length=512)
    recurse: bool = False
    config: JsonObject = Field(
        default_factory=dict, description="The assistant's config, for a graph factory"
    )


class GraphInfo(Contract):
    graph_id: str
    description: str | None = None
    name: str | None = Field(default=None, description="The compiled graph's own name, if set")


class GraphDescription(TenantContract):
    graphs: list[GraphInfo] = Field(default_factory=list)
    detail: JsonObject | None = Field(
        default=None, description="The drawing, the schemas, or {namespace: schemas}"
    )
