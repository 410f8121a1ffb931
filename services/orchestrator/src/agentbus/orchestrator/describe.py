"""`agentbus.v1.graphs.describe`: the graphs this orchestrator hosts, and a graph's drawing,
JSON schemas and subgraphs as LangGraph's server answers `/assistants/{id}/graph`, `/schemas`
and `/subgraphs`. A schema LangGraph cannot derive (a type Pydantic does not know) is None,
as there."""

from __future__ import annotations

import logging
from typing import Any

from pydantic import create_model

from agentbus.contracts import ErrorReply, GraphDescribeRequest, GraphDescription
from agentbus.contracts.graphs import GraphInfo

from .graphs import AnyGraph, Graphs
from .hosted_run import to_json

log = logging.getLogger("agentbus.orchestrator.describe")


def _safe(what: str, graph_id: str, make: Any) -> dict[str, Any] | None:
    try:
        value = make()
    except Exception as exc:
        log.warning("no %s schema for graph %r: %s", what, graph_id, exc)
        return None
    return to_json(value) if value is not None else None


def _state_schema(graph: AnyGraph) -> dict[str, Any]:
    """Every state channel with its update type (Any where Pydantic cannot describe it)."""
    fields: dict[str, Any] = {}
    for key in graph.stream_channels_list:
        channel = graph.channels[key]
        try:
            kind = channel.UpdateType  # type: ignore[union-attr]
            create_model(f"Check{key}", value=(kind, None)).model_json_schema()
        except Exception:
            kind = Any
        fields[key] = (kind, None)
    model = create_model(graph.get_name("State"), **fields)
    return model.model_json_schema()


def schemas(graph_id: str, graph: AnyGraph) -> dict[str, Any]:
    return {
        "graph_id": graph_id,
        "input_schema": _safe("input", graph_id, graph.get_input_jsonschema),
        "output_schema": _safe("output", graph_id, graph.get_output_jsonschema),
        "state_schema": _safe("state", graph_id, lambda: _state_schema(graph)),
        "config_schema": _safe(
            "config", graph_id, lambda: graph.config_schema().model_json_schema()
        ),
        "context_schema": _safe("context", graph_id, graph.get_context_jsonschema),
    }


def _drawing(graph: AnyGraph, xray: bool | int) -> dict[str, Any]:
    drawn = graph.get_graph(xray=xray).to_json()
    result: dict[str, Any] = to_json(drawn)
    return result


async def describe(req: GraphDescribeRequest, graphs: Graphs) -> GraphDescription | ErrorReply:
    if req.aspect == "list":
        return GraphDescription(
            tenant_id=req.tenant_id,
            graphs=[
                GraphInfo(graph_id=h.graph_id, description=h.description, name=h.name)
                for h in graphs.hosted.values()
            ],
        )
    if req.graph_id is None or req.graph_id not in graphs:
        return ErrorReply(error=f"unknown graph {req.graph_id!r}", reason="not_found")
    config: dict[str, Any] = {
        **req.config,
        "configurable": {
            **dict(req.config.get("configurable") or {}),
            "thread_id": f"{req.tenant_id}:describe",
        },
    }
    async with graphs.open(req.graph_id, config, req.tenant_id) as graph:
        if req.aspect == "graph":
            detail = _drawing(graph, req.xray)
        elif req.aspect == "schemas":
            detail = schemas(req.graph_id, graph)
        else:
            detail = {
                namespace: schemas(namespace.split("|")[-1] or req.graph_id, sub)  # type: ignore[arg-type]
                async for namespace, sub in graph.aget_subgraphs(
                    namespace=req.namespace, recurse=req.recurse
                )
            }
    return GraphDescription(tenant_id=req.tenant_id, detail=detail)
