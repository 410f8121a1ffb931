"""The specialists' tools: each one is a request over the bus to another service.

A tool never raises into the graph: a failure (no service answering, an error reply) becomes a
result with an `error` the model can read and pass on, a fixed sentence naming what is missing
("analytics could not be reached: no service is answering"; the graph's own service answers
"the graph could not be reached" when its database is down), never exception text or addresses.

Document search keeps only hits whose meaning is close enough to the question (`min_relevance`,
the cosine of the embedder's vectors): a passage below the bar is never offered to the model, so
it can be neither quoted nor cited. Each passage a run offers carries a `ref`, the number the
model cites it by ([1], [2], ...); after the answer, `cited` turns the markers it used into the
run's citations.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import nats.errors
from nats.aio.client import Client as NatsClient
from opentelemetry.trace import StatusCode

from agentbus.contracts import AnalyticsQuery, GraphQuery, SearchRequest
from agentbus.contracts import subjects as s
from agentbus.runtime.outbox import Outbox
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


# all-MiniLM-L6-v2 cosine between a question and a passage; bench/answer_quality.py measured it
# (an unrelated passage scores below 0.2, an answering one mostly above 0.3). Another embedding
# model has another scale: set AGENTBUS_MIN_RELEVANCE with it.
DEFAULT_MIN_RELEVANCE = 0.2


def _min_relevance() -> float:
    raw = os.environ.get("AGENTBUS_MIN_RELEVANCE", "").strip()
    if not raw:
        return DEFAULT_MIN_RELEVANCE
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not -1.0 <= value <= 1.0:
        raise ValueError(f"AGENTBUS_MIN_RELEVANCE must be a cosine between -1 and 1, not {raw!r}")
    return value


MIN_RELEVANCE = _min_relevance()


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
    def __init__(
        self,
        nc: NatsClient,
        timeout: float = 30.0,
        min_relevance: float = MIN_RELEVANCE,
        outbox: Outbox | None = None,
    ) -> None:
        self.nc = nc
        # Where alerts the bus refuses wait to be sent again (the replica's, see runner.py).
        self.outbox = outbox
        self.timeout = timeout
        self.min_relevance = min_relevance

    async def _request(self, subject: str, body: str, unavailable: str) -> dict[str, Any]:
        try:
            with nats_span(subject, "request") as headers:
                reply = await self.nc.request(
                    subject, body.encode(), timeout=self.timeout, headers=headers
                )
        except nats.errors.NoRespondersError:
            # Nothing subscribed (the service is stopped): NATS says so at once, no timeout.
            return {"error": f"{unavailable} could not be reached: no service is answering"}
        except nats.errors.TimeoutError:
            return {
                "error": f"{unavailable} could not be reached: no answer within {self.timeout:g}s"
            }
        except nats.errors.ConnectionClosedError:
            return {"error": f"{unavailable} could not be reached: the bus connection is closed"}
        try:
            data: dict[str, Any] = json.loads(reply.data)
        except ValueError:
            return {"error": f"{unavailable} sent an unreadable reply"}
        if not isinstance(data, dict):
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
            # The specialists' other tools (specialist_tools imports this module).
            from .specialist_tools import EXTRA

            if name in EXTRA:
                try:
                    return await EXTRA[name].run(self, tenant_id, arguments)
                except (KeyError, ValueError, TypeError) as exc:
                    return {"error": f"bad arguments for {name}: {exc}"}
            return {"error": f"unknown tool {name!r}"}
        try:
            if name == "search_documents":
                # Method, top_k and threshold left unset: retrieval applies the tenant's
                # pipeline settings (`PUT /api/v1/settings/pipeline`).
                req = SearchRequest(tenant_id=tenant_id, query=str(arguments["query"]))
                found = await self._request(
                    s.RETRIEVAL_SEARCH, req.model_dump_json(exclude_unset=True), "document search"
                )
                return relevant(found, self.min_relevance)
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


def relevant(result: dict[str, Any], bar: float) -> dict[str, Any]:
    """The search result without the hits below the relevance bar (their vector score; a hit
    with none was not among the closest in meaning at all)."""
    hits = result.get("hits")
    if not isinstance(hits, list):
        return result
    kept = [
        h
        for h in hits
        if isinstance(h, dict) and float((h.get("scores") or {}).get("vector", 0.0)) >= bar
    ]
    return {**result, "hits": kept, "below_relevance": len(hits) - len(kept)}


def _page_key(hit: dict[str, Any]) -> tuple[Any, Any]:
    return (hit.get("document_id"), hit.get("page"))


def number_passages(result: dict[str, Any], earlier: list[dict[str, Any]]) -> None:
    """Give each hit the `ref` the model cites it by: one number per document page in a run
    (two chunks of one page, or one page found by two searches, share it), after `earlier`'s."""
    refs = {_page_key(h): int(h["ref"]) for h in earlier if isinstance(h.get("ref"), int)}
    for hit in result.get("hits") or []:
        if isinstance(hit, dict):
            key = _page_key(hit)
            if key not in refs:
                refs[key] = max(refs.values(), default=0) + 1
            hit["ref"] = refs[key]


def passages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The numbered hits of this turn's search results (tool messages after the last user one)."""
    start = max((i for i, m in enumerate(messages) if m.get("role") == "user"), default=-1)
    out: list[dict[str, Any]] = []
    for m in messages[start + 1 :]:
        if m.get("role") != "tool":
            continue
        try:
            data = json.loads(m.get("content") or "")
        except (TypeError, ValueError):
            continue
        hits = data.get("hits") if isinstance(data, dict) else None
        out += [h for h in hits or [] if isinstance(h, dict) and isinstance(h.get("ref"), int)]
    return out


_MARKER = re.compile(r"\[(\d+(?:\s*,\s*\d+)*)\]")


def link(hit: dict[str, Any]) -> str:
    """Where a citation points: the document's own URL when it came from one, else the
    gateway's document resource; `#page=N` for a page (what PDF viewers open)."""
    source = str(hit.get("source") or "")
    base = source if source.startswith(("http://", "https://")) else ""
    base = base or f"/api/v1/documents/{hit.get('document_id')}"
    return f"{base}#page={hit['page']}" if hit.get("page") is not None else base


def cited(answer: str, offered: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The sources an answer cites: one per marker number it uses that names an offered
    passage, in the order of first citation, with title, page, chunks and a link."""
    by_ref: dict[int, list[dict[str, Any]]] = {}
    for hit in offered:
        by_ref.setdefault(int(hit["ref"]), []).append(hit)
    order: list[int] = []
    for m in _MARKER.finditer(answer):
        for n in (int(x) for x in m.group(1).split(",")):
            if n in by_ref and n not in order:
                order.append(n)
    out = []
    for n in order:
        hits = by_ref[n]
        first = hits[0]
        chunks = sorted({int(h["chunk_index"]) for h in hits if h.get("chunk_index") is not None})
        out.append(
            {
                "ref": n,
                "document_id": first.get("document_id"),
                "title": first.get("title"),
                "page": first.get("page"),
                "chunk_index": chunks[0] if chunks else None,
                "chunks": chunks,
                "score": max(float(h.get("score") or 0.0) for h in hits),
                "url": link(first),
            }
        )
    return out
