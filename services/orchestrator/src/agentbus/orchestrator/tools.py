"""The specialists' tools: each one is a request over the bus to another service.

A tool never raises into the graph: a failure (no service answering, an error reply) becomes a
result with an `error` the model can read and pass on, e.g. that analytics is not available.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import nats.errors
from nats.aio.client import Client as NatsClient
from opentelemetry.trace import StatusCode

from agentbus.contracts import AnalyticsQuery, GraphQuery, SearchRequest
from agentbus.contracts import subjects as s
from agentbus.runtime.traces import nats_span, tracer


@dataclass(frozen=True)
class Tool:
    name: str
    specialist: str  # documents | graph | analytics
    description: str
    parameters: dict[str, Any]

    def schema(self) -> dict[str, Any]:
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": self.parameters,
            },
        }


def _string(description: str) -> dict[str, Any]:
    return {"type": "string", "description": description}


TOOLS: tuple[Tool, ...] = (
    Tool(
        "search_documents",
        "documents",
        "Search the organisation's documents, runbooks, guides, policies and procedures: how to "
        "do something, what a process or rule says.",
        {
            "type": "object",
            "properties": {"query": _string("What to look for, in natural language")},
            "required": ["query"],
        },
    ),
    Tool(
        "find_people_by_skill",
        "graph",
        "Find people who know, use or have experience with a skill, programming language or "
        "technology: who knows Rust, who can help with Python.",
        {
            "type": "object",
            "properties": {"skill": _string("The skill or language, e.g. Rust")},
            "required": ["skill"],
        },
    ),
    Tool(
        "find_owners",
        "graph",
        "Find the owners, maintainers and main contributors of a repository or service: who "
        "owns or maintains it.",
        {
            "type": "object",
            "properties": {"repository": _string("The repository or service name")},
            "required": ["repository"],
        },
    ),
    Tool(
        "query_metrics",
        "analytics",
        "Metrics and statistics: deployment frequency, lead time for changes, change failure "
        "rate, time to restore (DORA), usage, tokens, cost, number of runs, anomalies.",
        {
            "type": "object",
            "properties": {
                "metric": {
                    "type": "string",
                    "enum": ["dora", "usage", "runs", "anomalies"],
                    "description": (
                        "Which family of metrics: dora (deployment frequency, lead time for "
                        "changes, change failure rate, time to restore), usage (tokens, cost), "
                        "runs (number of runs, failures), anomalies (unusual spikes)"
                    ),
                },
                "period": _string("Period, e.g. 30d"),
            },
            "required": ["metric"],
        },
    ),
)

BY_NAME = {t.name: t for t in TOOLS}

Request = Callable[[str, bytes, float], Awaitable[bytes]]


class ToolBox:
    def __init__(self, nc: NatsClient, timeout: float = 30.0) -> None:
        self.nc = nc
        self.timeout = timeout

    async def _request(self, subject: str, body: str, unavailable: str) -> dict[str, Any]:
        try:
            with nats_span(subject, "request") as headers:
                reply = await self.nc.request(
                    subject, body.encode(), timeout=self.timeout, headers=headers
                )
        except nats.errors.NoRespondersError:
            return {"error": f"{unavailable} is not available (no service answers {subject})"}
        except nats.errors.TimeoutError:
            return {"error": f"{unavailable} did not answer within {self.timeout:g}s"}
        try:
            data: dict[str, Any] = json.loads(reply.data)
        except ValueError:
            return {"error": f"{unavailable} sent an unreadable reply"}
        return data

    async def call(self, tenant_id: str, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        with tracer().start_as_current_span(
            f"execute_tool {name}",
            attributes={"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": name},
        ) as span:
            result = await self._call(tenant_id, name, arguments)
            if isinstance(result.get("error"), str):
                span.set_attribute("error.type", "tool_error")
                span.set_status(StatusCode.ERROR, result["error"][:200])
            return result

    async def _call(self, tenant_id: str, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        if name not in BY_NAME:
            return {"error": f"unknown tool {name!r}"}
        try:
            if name == "search_documents":
                req = SearchRequest(tenant_id=tenant_id, query=str(arguments["query"]), top_k=5)
                return await self._request(
                    s.RETRIEVAL_SEARCH, req.model_dump_json(), "document search"
                )
            if name in ("find_people_by_skill", "find_owners"):
                query = (
                    GraphQuery(
                        tenant_id=tenant_id,
                        name="people_by_skill",
                        params={"skill": str(arguments["skill"])},
                        limit=10,
                    )
                    if name == "find_people_by_skill"
                    else GraphQuery(
                        tenant_id=tenant_id,
                        name="owners_of",
                        params={"repository": str(arguments["repository"])},
                        limit=10,
                    )
                )
                return await self._request(s.GRAPH_QUERY, query.model_dump_json(), "the graph")
            metric = str(arguments.get("metric", "dora"))
            params = {"period": str(arguments["period"])} if arguments.get("period") else {}
            aq = AnalyticsQuery(tenant_id=tenant_id, name=metric, params=params)  # type: ignore[arg-type]
            return await self._request(s.ANALYTICS_QUERY, aq.model_dump_json(), "analytics")
        except (KeyError, ValueError) as exc:
            return {"error": f"bad arguments for {name}: {exc}"}


def preview(result: dict[str, Any], limit: int = 300) -> str:
    text = json.dumps(result, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def citations(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Sources of a search result: document, title, page, chunk."""
    out = []
    for hit in result.get("hits") or []:
        out.append(
            {
                "document_id": hit.get("document_id"),
                "title": hit.get("title"),
                "page": hit.get("page"),
                "chunk_index": hit.get("chunk_index"),
                "score": hit.get("score"),
            }
        )
    return out
