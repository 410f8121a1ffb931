"""What happens around a run but outside it: delayed starts (`after_seconds`), the webhook POSTed
when it ends (`webhook`), and deleting the thread a cron made for it (`on_run_completed:
delete`).

Both live in PostgreSQL and are worked by every gateway replica's pass, once a second: rows are
leased with `FOR UPDATE SKIP LOCKED` (two replicas never take the same row; a replica that dies
holding a lease leaves it to the next one after LEASE_S). A gateway restart loses neither a
delayed run nor a webhook. Delivery is at least once: a replica that dies between the POST and
deleting the row posts again, so receivers should key on `run_id`.

Webhook targets are an SSRF risk (the gateway would POST from inside the network to any URL a
tenant names), so a URL is accepted only when it matches the operator's allow-list
(`AGENTBUS_WEBHOOK_ALLOWED_URLS`: entries `scheme://host[:port][/path-prefix]`; no port in an
entry allows any port). Without a list every webhook is refused with a 422. Redirects are not
followed (a redirect could leave the list).
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import asyncpg
import httpx
from fastapi import HTTPException

from agentbus.contracts import RunRequested
from agentbus.contracts.runs import MultitaskStrategy
from agentbus.runtime.migrations import Migration
from agentbus.runtime.stores.schema import LockKey
from agentbus.runtime.tasks import cancel_and_wait

from .lazy_schema import LazySchema

if TYPE_CHECKING:
    from .runs import LangGraphRuns

log = logging.getLogger("agentbus.gateway.langgraph.followups")

SCHEMA = """
CREATE TABLE IF NOT EXISTS langgraph_delayed_runs (
    tenant_id  text NOT NULL,
    run_id     text NOT NULL,
    thread_id  text NOT NULL,
    strategy   text NOT NULL,
    request    jsonb NOT NULL,
    due_at     timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, run_id)
);
CREATE INDEX IF NOT EXISTS langgraph_delayed_runs_due ON langgraph_delayed_runs (due_at);
CREATE TABLE IF NOT EXISTS langgraph_followups (
    tenant_id     text NOT NULL,
    run_id        text NOT NULL,
    thread_id     text NOT NULL,
    webhook       text,
    delete_thread boolean NOT NULL DEFAULT false,
    attempts      integer NOT NULL DEFAULT 0,
    next_check    timestamptz NOT NULL DEFAULT now(),
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, run_id)
);
CREATE INDEX IF NOT EXISTS langgraph_followups_due ON langgraph_followups (next_check);
"""

MIGRATIONS = (Migration(1, "delayed runs and follow-ups", (SCHEMA,)),)

TICK_S = 1.0
LEASE_S = 30.0
WEBHOOK_TIMEOUT_S = 10.0
# A failing receiver is tried this many times, 2^n seconds apart, then given up (logged).
WEBHOOK_ATTEMPTS = 5
MAX_URL = 2048
# Stored run statuses of an ended run (its events may have expired).
ENDED = frozenset({"success", "error", "cancelled", "interrupted", "timeout"})


@dataclass(frozen=True)
class WebhookPolicy:
    """The operator's allow-list of webhook targets."""

    allowed: tuple[str, ...] = ()

    def check(self, url: str) -> str:
        """`url` when allowed; HTTPException 422 saying why not."""
        if not self.allowed:
            raise HTTPException(
                422,
                "webhooks are off on this server (the operator sets AGENTBUS_WEBHOOK_ALLOWED_URLS)",
            )
        if len(url) > MAX_URL:
            raise HTTPException(422, f"webhook URL longer than {MAX_URL} characters")
        target = urlsplit(url)
        if target.scheme not in ("http", "https") or not target.hostname:
            raise HTTPException(422, "webhook must be an http(s) URL")
        if target.username or target.password:
            raise HTTPException(422, "webhook URL must not carry credentials")
        for entry in self.allowed:
            if _matches(urlsplit(entry), target):
                return url
        raise HTTPException(422, f"webhook target {target.hostname!r} is not on the allow-list")


async def post_webhook(
    policy: WebhookPolicy,
    url: str,
    payload: dict[str, Any],
    headers: dict[str, str] | None = None,
) -> None:
    """POST `payload` as JSON to an allowed `url`, redirects not followed; raises when refused
    or not answered 2xx. The A2A push notifications deliver through it too."""
    policy.check(url)  # the list may have shrunk since the target was registered
    body = json.dumps(payload, default=str).encode()
    async with httpx.AsyncClient(timeout=WEBHOOK_TIMEOUT_S, follow_redirects=False) as http:
        response = await http.post(
            url, content=body, headers=headers or {"Content-Type": "application/json"}
        )
    if response.status_code >= 300:
        raise RuntimeError(f"receiver answered {response.status_code}")


def _matches(entry: Any, target: Any) -> bool:
    if entry.scheme != target.scheme or (entry.hostname or "") != target.hostname:
        return False
    if entry.port is not None and entry.port != (target.port or _default_port(target.scheme)):
        return False
    prefix = entry.path.rstrip("/")
    return not prefix or target.path == prefix or target.path.startswith(prefix + "/")


def _default_port(scheme: str) -> int:
    return 443 if scheme == "https" else 80


class Followups:
    def __init__(self, pool: asyncpg.Pool, svc: LangGraphRuns, policy: WebhookPolicy) -> None:
        self.pool = pool
        self.svc = svc
        self.policy = policy
        self._schema = LazySchema(pool, MIGRATIONS, LockKey.LANGGRAPH_FOLLOWUPS)

    async def ready(self) -> None:
        await self._schema.ensure()

    # -- registering -------------------------------------------------------------------------

    async def delay(self, run: RunRequested, strategy: MultitaskStrategy, seconds: float) -> None:
        await self.ready()
        await self.pool.execute(
            "INSERT INTO langgraph_delayed_runs VALUES"
            " ($1, $2, $3, $4, $5, now() + make_interval(secs => $6))",
            run.tenant_id,
            run.run_id,
            run.thread_id,
            strategy,
            run.model_dump_json(),
            seconds,
        )

    async def drop_delayed(self, tenant_id: str, run_id: str) -> bool:
        """Cancel a run that has not started yet; False when it is not waiting here."""
        await self.ready()
        done = await self.pool.execute(
            "DELETE FROM langgraph_delayed_runs WHERE tenant_id = $1 AND run_id = $2",
            tenant_id,
            run_id,
        )
        return str(done).endswith(" 1")

    async def follow(
        self,
        tenant_id: str,
        run_id: str,
        thread_id: str,
        *,
        webhook: str | None,
        delete_thread: bool,
    ) -> None:
        await self.ready()
        await self.pool.execute(
            "INSERT INTO langgraph_followups (tenant_id, run_id, thread_id, webhook, delete_thread)"
            " VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
            tenant_id,
            run_id,
            thread_id,
            webhook,
            delete_thread,
        )

    # -- the pass ----------------------------------------------------------------------------

    async def start_due(self) -> int:
        """Admit the delayed runs whose time has come."""
        await self.ready()
        rows = await self.pool.fetch(
            "UPDATE langgraph_delayed_runs SET due_at = now() + make_interval(secs => $1)"
            " WHERE (tenant_id, run_id) IN (SELECT tenant_id, run_id FROM langgraph_delayed_runs"
            "  WHERE due_at <= now() ORDER BY due_at LIMIT 50 FOR UPDATE SKIP LOCKED)"
            " RETURNING *",
            LEASE_S,
        )
        for row in rows:
            run = RunRequested.model_validate_json(row["request"])
            # A delayed run waits its turn rather than being refused when its time comes.
            strategy: MultitaskStrategy = (
                row["strategy"] if row["strategy"] != "reject" else "enqueue"
            )
            try:
                await self.svc.admit(run, strategy)
            except HTTPException as exc:
                log.warning("delayed run %s not started: %s", run.run_id, exc.detail)
            await self.drop_delayed(row["tenant_id"], row["run_id"])
        return len(rows)

    async def settle_ended(self) -> int:
        """Webhooks and thread deletions of the runs that have ended."""
        await self.ready()
        rows = await self.pool.fetch(
            "UPDATE langgraph_followups SET next_check = now() + make_interval(secs => $1)"
            " WHERE (tenant_id, run_id) IN (SELECT tenant_id, run_id FROM langgraph_followups"
            "  WHERE next_check <= now() ORDER BY next_check LIMIT 50 FOR UPDATE SKIP LOCKED)"
            " RETURNING *",
            LEASE_S,
        )
        for row in rows:
            await self._settle(dict(row))
        return len(rows)

    async def _settle(self, job: dict[str, Any]) -> None:
        tenant, run_id, thread_id = job["tenant_id"], job["run_id"], job["thread_id"]
        run_row = await self.svc.records.run(tenant, thread_id, run_id)
        if run_row is None:  # the run or its thread was deleted: nothing to report
            await self._done(job)
            return
        last = await self.svc.last_event(run_id)
        ended = last is not None and last.type == "end"
        if not ended and run_row.get("status") not in ENDED:
            await self._later(job, 1.0, count=False)
            return
        if job["webhook"]:
            try:
                await self._post(job["webhook"], await self._payload(tenant, run_row))
            except Exception as exc:
                if job["attempts"] + 1 < WEBHOOK_ATTEMPTS:
                    log.info("webhook of run %s failed (%s); retried", run_id, exc)
                    await self._later(job, 2.0 ** (job["attempts"] + 1), count=True)
                    return
                log.warning(
                    "webhook of run %s given up after %d tries: %s",
                    run_id,
                    job["attempts"] + 1,
                    exc,
                )
        if job["delete_thread"]:
            await self.svc.store.delete_thread(tenant, thread_id)
        await self._done(job)

    async def _payload(self, tenant: str, run_row: dict[str, Any]) -> dict[str, Any]:
        """The run as GET /runs/{id} answers it, with its final values or its error."""
        run = await self.svc.run(tenant, run_row)
        result = await self.svc.outcome(tenant, run_row)
        error = result.pop("__error__", None) if isinstance(result, dict) else None
        now = datetime.now(UTC).isoformat()
        return {**run, "values": result, "error": error, "webhook_sent_at": now}

    async def _post(self, url: str, payload: dict[str, Any]) -> None:
        await post_webhook(self.policy, url, payload)

    async def _later(self, job: dict[str, Any], seconds: float, *, count: bool) -> None:
        await self.pool.execute(
            "UPDATE langgraph_followups SET next_check = now() + make_interval(secs => $3),"
            " attempts = attempts + $4 WHERE tenant_id = $1 AND run_id = $2",
            job["tenant_id"],
            job["run_id"],
            seconds,
            1 if count else 0,
        )

    async def _done(self, job: dict[str, Any]) -> None:
        await self.pool.execute(
            "DELETE FROM langgraph_followups WHERE tenant_id = $1 AND run_id = $2",
            job["tenant_id"],
            job["run_id"],
        )

    async def run_forever(self) -> None:
        while True:
            try:
                await self.start_due()
                await self.settle_ended()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("run follow-up pass failed", exc_info=True)
            await asyncio.sleep(TICK_S)


async def start_followups(followups: Followups) -> asyncio.Task[None]:
    return asyncio.create_task(followups.run_forever(), name="langgraph-followups")


async def stop_followups(task: asyncio.Task[None]) -> None:
    await cancel_and_wait(task)
