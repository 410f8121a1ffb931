"""Query history: every question a user asked through the chat APIs, with its answer, citations,
latency and the pipeline settings in force, per user and tenant.

Stored in PostgreSQL next to the gateway's run records (table `query_history`), not derived from
the analytics events, because:
- the gateway is where the asker is known (user or API key): analytics events carry the tenant,
  not the user, and a per-user page needs an index on exactly that;
- the settings in force are read when the question is admitted, the moment they applied;
- history is user data to page through and delete with the tenant, kept as long as the tenant
  wants it, while analytics rows are truncated texts (RunFinished keeps 2000 characters and no
  citations) on an analytics retention.
The row is written when the turn is submitted (`start_turn`) and completed from the run's `end`
event: when a gateway follows the run (every chat API does), else on the first read (the event
stays in RUN_EVENTS for an hour).

Runs created through the LangGraph API (`/threads/{id}/runs`, `/runs/stream`, `/runs/wait`, the
stateless `/runs...`, and MCP's graph tools, all `LangGraphRuns.create`) join the history too
when their input is a question: a `messages` list holding a user (`human`) message, whose last
one's text is the question (`question_in`). Any other input (the `steps` diagnostics, a graph of
its own state such as `{"topic": ...}`, a `command` that resumes an interrupt, a user message
without text) is not a question and is left out, as are a cron's ticks (nobody asked them then).
A run is one row (the primary key), whichever API started it: a chat turn never goes through
`LangGraphRuns.create`, and a LangGraph run never through `start_turn`.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from datetime import datetime
from typing import Annotated, Any

import asyncpg
from fastapi import APIRouter, HTTPException, Query, Request

from agentbus.contracts import RunEvent
from agentbus.runtime.migrations import Migration
from agentbus.runtime.stores import pipeline_settings as ps
from agentbus.runtime.stores.schema import LockKey, migrate

from ..auth.deps import CurrentPrincipal, Principal

log = logging.getLogger("agentbus.gateway.history")

router = APIRouter(prefix="/api/v1", tags=["history"])
Auth = CurrentPrincipal

SCHEMA = """
CREATE TABLE IF NOT EXISTS query_history (
    tenant_id     text NOT NULL,
    run_id        text NOT NULL,
    owner         text NOT NULL,
    thread_id     text NOT NULL,
    assistant_id  text NOT NULL,
    question      text NOT NULL,
    settings      jsonb NOT NULL,
    status        text NOT NULL DEFAULT 'pending',
    answer        text,
    citations     jsonb,
    latency_ms    double precision,
    created_at    timestamptz NOT NULL DEFAULT now(),
    finished_at   timestamptz,
    PRIMARY KEY (tenant_id, run_id)
);
CREATE INDEX IF NOT EXISTS query_history_owner
    ON query_history (tenant_id, owner, created_at DESC, run_id DESC);
"""

MIGRATIONS = (Migration(1, "query history", (SCHEMA,)),)

OPEN = ("pending", "running")
COLUMNS = (
    "run_id, thread_id, assistant_id, question, settings, status, answer, citations,"
    " latency_ms, created_at, finished_at"
)


def owner_of(principal: Principal) -> str:
    """Whose history a question joins: the user, or the API key that asked."""
    if principal.user_id is not None:
        return f"user:{principal.user_id}"
    return f"api_key:{principal.api_key_id}"


def question_of(messages: list[Any]) -> str:
    """The text of the last user message: a dict with `role` user or `type` human, a
    `[role, content]` pair or a bare string (LangChain reads both as messages); "" when none."""
    for message in reversed(messages):
        if isinstance(message, str):
            return message
        if isinstance(message, list | tuple) and len(message) == 2:
            role, content = message
        elif isinstance(message, dict):
            role, content = message.get("role", message.get("type")), message.get("content")
        else:
            continue
        if role in ("user", "human"):
            if isinstance(content, str):
                return content
            if isinstance(content, list):
                return "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
            return ""
    return ""


def question_in(input: Any) -> str:
    """The question of a LangGraph run's input: its `messages` list's last user message's text;
    "" when the input has none (it is then not a question and stays out of the history)."""
    if not isinstance(input, dict):
        return ""
    messages = input.get("messages")
    if not isinstance(messages, list):
        return ""
    question = question_of(messages)
    return question if question.strip() else ""


class HistoryStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def ensure_schema(self) -> None:
        await migrate(self.pool, LockKey.QUERY_HISTORY, MIGRATIONS)

    async def record(
        self,
        principal: Principal,
        run_id: str,
        thread_id: str,
        assistant_id: str,
        messages: list[Any],
    ) -> None:
        try:
            await self._record(principal, run_id, thread_id, assistant_id, messages)
        except (asyncpg.PostgresError, OSError):
            # The run is already submitted: the asker gets the answer, history misses a line.
            log.exception("query history not recorded", extra={"run_id": run_id})

    async def _record(
        self,
        principal: Principal,
        run_id: str,
        thread_id: str,
        assistant_id: str,
        messages: list[Any],
    ) -> None:
        stored = await ps.load(self.pool, principal.tenant_id)
        used = {**stored.settings.model_dump(mode="json"), "revision": stored.revision}
        await self.pool.execute(
            "INSERT INTO query_history (tenant_id, run_id, owner, thread_id, assistant_id,"
            " question, settings) VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb)"
            " ON CONFLICT (tenant_id, run_id) DO NOTHING",
            principal.tenant_id,
            run_id,
            owner_of(principal),
            thread_id,
            assistant_id,
            question_of(messages),
            json.dumps(used),
        )

    async def complete(self, tenant_id: str, event: RunEvent) -> None:
        """The run ended: its answer, citations and latency (once; later calls change nothing)."""
        if event.type != "end":
            return
        citations = event.data.get("citations") or []
        try:
            await self._complete(tenant_id, event, citations)
        except (asyncpg.PostgresError, OSError):
            # Called at the end of a client's stream: never break it; a read completes it later.
            log.exception("query history not completed", extra={"run_id": event.run_id})

    async def _complete(self, tenant_id: str, event: RunEvent, citations: Any) -> None:
        await self.pool.execute(
            "UPDATE query_history SET status = $3, answer = $4, citations = $5::jsonb,"
            " finished_at = $6,"
            " latency_ms = greatest(0, extract(epoch FROM ($6 - created_at)) * 1000)"
            " WHERE tenant_id = $1 AND run_id = $2 AND status IN ('pending', 'running')",
            tenant_id,
            event.run_id,
            event.status or "success",
            str(event.data.get("answer") or ""),
            json.dumps(citations if isinstance(citations, list) else []),
            event.ts,
        )

    async def page(
        self, tenant_id: str, owner: str, limit: int, after: tuple[datetime, str] | None
    ) -> list[asyncpg.Record]:
        if after is None:
            rows: list[asyncpg.Record] = await self.pool.fetch(
                f"SELECT {COLUMNS} FROM query_history WHERE tenant_id = $1 AND owner = $2"
                " ORDER BY created_at DESC, run_id DESC LIMIT $3",
                tenant_id,
                owner,
                limit,
            )
            return rows
        rows = await self.pool.fetch(
            f"SELECT {COLUMNS} FROM query_history WHERE tenant_id = $1 AND owner = $2"
            " AND (created_at, run_id) < ($4, $5)"
            " ORDER BY created_at DESC, run_id DESC LIMIT $3",
            tenant_id,
            owner,
            limit,
            after[0],
            after[1],
        )
        return rows

    async def one(self, tenant_id: str, owner: str, run_id: str) -> asyncpg.Record | None:
        return await self.pool.fetchrow(
            f"SELECT {COLUMNS} FROM query_history"
            " WHERE tenant_id = $1 AND owner = $2 AND run_id = $3",
            tenant_id,
            owner,
            run_id,
        )


def encode_cursor(created_at: datetime, key: str) -> str:
    raw = json.dumps([created_at.isoformat(), key]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """The position a page ended at; 422 for anything this API did not hand out."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        created, key = json.loads(base64.urlsafe_b64decode(padded.encode()))
        return datetime.fromisoformat(created), str(key)
    except (ValueError, TypeError, binascii.Error):
        raise HTTPException(422, "Invalid cursor: pass a next_cursor this API gave") from None


def _entry(row: asyncpg.Record) -> dict[str, Any]:
    settings, citations = row["settings"], row["citations"]
    return {
        "id": row["run_id"],
        "run_id": row["run_id"],
        "thread_id": row["thread_id"],
        "assistant_id": row["assistant_id"],
        "question": row["question"],
        "answer": row["answer"],
        "citations": json.loads(citations) if isinstance(citations, str) else citations,
        "status": row["status"],
        "latency_ms": None if row["latency_ms"] is None else round(row["latency_ms"], 1),
        "settings": json.loads(settings) if isinstance(settings, str) else settings,
        "created_at": row["created_at"].isoformat(),
        "finished_at": row["finished_at"].isoformat() if row["finished_at"] else None,
    }


def history_of(request: Request) -> HistoryStore:
    store: HistoryStore | None = getattr(request.app.state, "history", None)
    if store is None:
        raise HTTPException(503, "The gateway is starting")
    return store


async def _fresh(request: Request, tenant_id: str, rows: list[asyncpg.Record]) -> bool:
    """Complete entries whose run ended while no gateway followed it; whether any changed."""
    from ..turns import last_event  # turns imports this module

    changed = False
    for row in rows:
        if row["status"] not in OPEN:
            continue
        event = await last_event(request.app.state.runs, row["run_id"])
        if event is not None and event.type == "end" and event.tenant_id == tenant_id:
            await history_of(request).complete(tenant_id, event)
            changed = True
    return changed


@router.get("/history", summary="Your questions and their answers, newest first")
async def list_history(
    request: Request,
    principal: Auth,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
) -> dict[str, Any]:
    store = history_of(request)
    after = decode_cursor(cursor) if cursor else None
    owner = owner_of(principal)
    rows = await store.page(principal.tenant_id, owner, limit + 1, after)
    if await _fresh(request, principal.tenant_id, rows):
        rows = await store.page(principal.tenant_id, owner, limit + 1, after)
    more = len(rows) > limit
    rows = rows[:limit]
    last = rows[-1] if rows else None
    return {
        "items": [_entry(r) for r in rows],
        "next_cursor": encode_cursor(last["created_at"], last["run_id"]) if more and last else None,
    }


@router.get(
    "/history/{entry_id}",
    summary="One question of yours with its answer, citations, latency and settings",
    responses={404: {"description": "Not a question of the caller"}},
)
async def get_history(entry_id: str, request: Request, principal: Auth) -> dict[str, Any]:
    store = history_of(request)
    owner = owner_of(principal)
    row = await store.one(principal.tenant_id, owner, entry_id)
    if row is None:
        raise HTTPException(404, "History entry not found")
    if await _fresh(request, principal.tenant_id, [row]):
        row = await store.one(principal.tenant_id, owner, entry_id)
        assert row is not None
    return _entry(row)
