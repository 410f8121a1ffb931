"""Crons of the LangGraph API: scheduled runs, stored in PostgreSQL, fired by every gateway
replica's scheduler and yet exactly once per tick.

Why PostgreSQL and not a JetStream schedule: crons are tenant data the API searches, counts
and patches (SQL does that), and a tick must become exactly one run. Each tick is claimed in one
transaction that moves the cron's `next_run_date` on and records the fire
(`langgraph_cron_fires`, primary key cron + tick) under `FOR UPDATE SKIP LOCKED`, so two
replicas never claim the same tick. The run's id is `uuid5(cron_id, tick)`: a replica that
dies after the claim leaves the fire unmarked, the next scheduler pass creates the run again
under the same id, and the run records (and JetStream's dedupe by run id) refuse a second one.
A platform that was down over several ticks fires once for the missed ones, then follows the
schedule from now. Schedules are cron expressions in UTC (5 fields; a 6th field is seconds).
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from datetime import UTC, datetime
from typing import Any, Literal

import asyncpg
from croniter import croniter  # type: ignore[import-untyped]
from fastapi import HTTPException
from pydantic import Field, ValidationError, field_validator

from agentbus.runtime.migrations import Migration
from agentbus.runtime.stores.schema import LockKey
from agentbus.runtime.tasks import cancel_and_wait

from ..auth.deps import Principal
from ..store import _row
from .lazy_schema import LazySchema
from .models import Body, Breakpoints, RunCreate

log = logging.getLogger("agentbus.gateway.langgraph.crons")

SCHEMA = """
CREATE TABLE IF NOT EXISTS langgraph_crons (
    tenant_id     text NOT NULL,
    cron_id       text NOT NULL,
    assistant_id  text NOT NULL,
    thread_id     text,
    user_id       text,
    schedule      text NOT NULL,
    payload       jsonb NOT NULL DEFAULT '{}',
    metadata      jsonb NOT NULL DEFAULT '{}',
    enabled       boolean NOT NULL DEFAULT true,
    end_time      timestamptz,
    next_run_date timestamptz,
    on_run_completed text NOT NULL DEFAULT 'keep',
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, cron_id)
);
CREATE INDEX IF NOT EXISTS langgraph_crons_due ON langgraph_crons (next_run_date) WHERE enabled;
CREATE TABLE IF NOT EXISTS langgraph_cron_fires (
    tenant_id  text NOT NULL,
    cron_id    text NOT NULL,
    tick       timestamptz NOT NULL,
    run_id     text NOT NULL,
    fired      boolean NOT NULL DEFAULT false,
    claimed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, cron_id, tick)
);
"""

MIGRATIONS = (Migration(1, "crons and their fires", (SCHEMA,)),)

# Run fields a cron's payload may carry (the rest of a run body is the scheduler's).
PAYLOAD_FIELDS = (
    "input",
    "config",
    "context",
    "interrupt_before",
    "interrupt_after",
    "stream_mode",
    "multitask_strategy",
    "durability",
    "webhook",
)
SORTABLE = {"cron_id", "assistant_id", "thread_id", "next_run_date", "created_at", "updated_at"}
# A fire claimed but not marked done after this long is created again (same run id).
RETRY_AFTER_S = 15.0
TICK_S = 1.0


def next_after(schedule: str, after: datetime) -> datetime:
    result: datetime = croniter(schedule, after).get_next(datetime)
    return result


def _schedule(value: str) -> str:
    value = value.strip()
    if len(value.split()) not in (5, 6) or not croniter.is_valid(value):
        raise ValueError(f"schedule {value!r} is not a cron expression (5 fields, UTC)")
    return value


class CronCreate(Body):
    schedule: str = Field(min_length=1, max_length=200)
    assistant_id: str = Field(min_length=1, max_length=128)
    input: dict[str, Any] | None = None
    config: dict[str, Any] | None = None
    context: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None
    interrupt_before: Breakpoints = None
    interrupt_after: Breakpoints = None
    stream_mode: str | list[str] | None = None
    multitask_strategy: Literal["reject", "enqueue", "interrupt", "rollback"] | None = None
    durability: Literal["sync", "async", "exit"] | None = None
    end_time: datetime | None = None
    enabled: bool = True
    on_run_completed: Literal["delete", "keep"] | None = None
    checkpoint_during: bool | None = None
    stream_subgraphs: bool | None = None
    stream_resumable: bool | None = None
    webhook: str | None = Field(default=None, min_length=1, max_length=2048)

    @field_validator("schedule")
    @classmethod
    def _check(cls, value: str) -> str:
        return _schedule(value)


def _on_completed(value: str | None, thread_id: str | None) -> str:
    """What happens to a tick's thread: LangGraph deletes it by default; a thread cron runs on
    the caller's thread, which is never deleted."""
    if thread_id is not None:
        if value == "delete":
            raise HTTPException(
                422, "on_run_completed 'delete' applies to crons that make a thread per run"
            )
        return "keep"
    return value or "delete"


class CronPatch(Body):
    schedule: str | None = Field(default=None, min_length=1, max_length=200)
    input: dict[str, Any] | None = None
    config: dict[str, Any] | None = None
    context: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None
    interrupt_before: Breakpoints = None
    interrupt_after: Breakpoints = None
    stream_mode: str | list[str] | None = None
    durability: Literal["sync", "async", "exit"] | None = None
    end_time: datetime | None = None
    enabled: bool | None = None
    on_run_completed: Literal["delete", "keep"] | None = None
    stream_subgraphs: bool | None = None
    stream_resumable: bool | None = None
    webhook: str | None = Field(default=None, min_length=1, max_length=2048)

    @field_validator("schedule")
    @classmethod
    def _check(cls, value: str | None) -> str | None:
        return _schedule(value) if value is not None else None


class CronSearch(Body):
    assistant_id: str | None = None
    thread_id: str | None = None
    enabled: bool | None = None
    metadata: dict[str, Any] | None = None
    limit: int = Field(default=10, ge=1, le=1000)
    offset: int = Field(default=0, ge=0)
    sort_by: str | None = None
    sort_order: Literal["asc", "desc"] | None = None
    select: list[str] | None = None

    @field_validator("sort_by")
    @classmethod
    def _sortable(cls, value: str | None) -> str | None:
        if value is not None and value not in SORTABLE:
            raise ValueError(f"sort_by must be one of {sorted(SORTABLE)}")
        return value


class CronCount(Body):
    assistant_id: str | None = None
    thread_id: str | None = None
    metadata: dict[str, Any] | None = None


def _out(row: dict[str, Any] | None) -> dict[str, Any] | None:
    if row is None:
        return None
    if isinstance(row.get("payload"), str):
        row["payload"] = json.loads(row["payload"])
    for key in ("end_time", "next_run_date"):
        if isinstance(row.get(key), datetime):
            row[key] = row[key].isoformat()
    return row


class Crons:
    def __init__(self, pool: asyncpg.Pool, svc: Any) -> None:
        self.pool = pool
        self.svc = svc  # LangGraphRuns: assistants and the run path
        self._schema = LazySchema(pool, MIGRATIONS, LockKey.LANGGRAPH_CRONS)

    async def ready(self) -> None:
        await self._schema.ensure()

    async def create(
        self, principal: Principal, body: CronCreate, thread_id: str | None
    ) -> dict[str, Any]:
        await self.ready()
        tenant = principal.tenant_id
        if body.webhook:
            self.svc.followups.policy.check(body.webhook)
        assistant = await self.svc.assistants.resolve(tenant, body.assistant_id)
        if thread_id is not None:
            await self.svc.thread_row(tenant, thread_id)
        on_completed = _on_completed(body.on_run_completed, thread_id)
        payload = {k: getattr(body, k) for k in PAYLOAD_FIELDS if getattr(body, k) is not None}
        try:  # the runs it will start are checked now: 422 here, not a failed tick later
            RunCreate.model_validate({"assistant_id": body.assistant_id, **payload})
        except ValidationError as exc:
            problems = "; ".join(str(e["msg"]) for e in exc.errors())
            raise HTTPException(422, f"invalid run payload: {problems}") from None
        now = datetime.now(UTC)
        row = await self.pool.fetchrow(
            "INSERT INTO langgraph_crons (tenant_id, cron_id, assistant_id, thread_id, user_id,"
            " schedule, payload, metadata, enabled, end_time, next_run_date, on_run_completed)"
            " VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12) RETURNING *",
            tenant,
            str(uuid.uuid4()),
            assistant["assistant_id"],
            thread_id,
            principal.user_id,
            body.schedule,
            json.dumps(payload),
            json.dumps(body.metadata or {}),
            body.enabled,
            body.end_time,
            next_after(body.schedule, now),
            on_completed,
        )
        created = _out(_row(row))
        assert created is not None
        return created

    async def get(self, tenant_id: str, cron_id: str) -> dict[str, Any]:
        await self.ready()
        row = await self.pool.fetchrow(
            "SELECT * FROM langgraph_crons WHERE tenant_id = $1 AND cron_id = $2",
            tenant_id,
            cron_id,
        )
        found = _out(_row(row))
        if found is None:
            raise HTTPException(404, f"Cron {cron_id!r} not found")
        return found

    async def patch(self, tenant_id: str, cron_id: str, body: CronPatch) -> dict[str, Any]:
        if body.webhook:
            self.svc.followups.policy.check(body.webhook)
        current = await self.get(tenant_id, cron_id)
        if body.on_run_completed is not None:
            _on_completed(body.on_run_completed, current["thread_id"])
        payload = dict(current["payload"] or {})
        payload.update(
            {k: getattr(body, k) for k in PAYLOAD_FIELDS if getattr(body, k, None) is not None}
        )
        schedule = body.schedule or current["schedule"]
        enabled = body.enabled if body.enabled is not None else current["enabled"]
        row = await self.pool.fetchrow(
            "UPDATE langgraph_crons SET schedule = $3, payload = $4,"
            " metadata = metadata || $5::jsonb, enabled = $6,"
            " end_time = coalesce($7, end_time), on_run_completed = coalesce($8, on_run_completed),"
            " next_run_date = CASE WHEN $9 THEN $10 ELSE next_run_date END, updated_at = now()"
            " WHERE tenant_id = $1 AND cron_id = $2 RETURNING *",
            tenant_id,
            cron_id,
            schedule,
            json.dumps(payload),
            json.dumps(body.metadata or {}),
            enabled,
            body.end_time,
            body.on_run_completed,
            body.schedule is not None or (body.enabled and not current["enabled"]),
            next_after(schedule, datetime.now(UTC)),
        )
        patched = _out(_row(row))
        assert patched is not None
        return patched

    async def delete(self, tenant_id: str, cron_id: str) -> None:
        await self.get(tenant_id, cron_id)
        await self.pool.execute(
            "DELETE FROM langgraph_crons WHERE tenant_id = $1 AND cron_id = $2",
            tenant_id,
            cron_id,
        )

    async def search(
        self, tenant_id: str, body: CronSearch | CronCount, *, count: bool = False
    ) -> Any:
        await self.ready()
        args: list[Any] = [
            tenant_id,
            getattr(body, "assistant_id", None),
            getattr(body, "thread_id", None),
            getattr(body, "enabled", None),
            json.dumps(body.metadata) if body.metadata else None,
        ]
        where = (
            " FROM langgraph_crons WHERE tenant_id = $1"
            " AND ($2::text IS NULL OR assistant_id = $2)"
            " AND ($3::text IS NULL OR thread_id = $3)"
            " AND ($4::boolean IS NULL OR enabled = $4)"
            " AND ($5::jsonb IS NULL OR metadata @> $5::jsonb)"
        )
        if count:
            return int(await self.pool.fetchval("SELECT count(*)" + where, *args) or 0)
        assert isinstance(body, CronSearch)
        column = body.sort_by or "created_at"  # validated against SORTABLE
        order = "ASC" if body.sort_order == "asc" else "DESC"
        rows = await self.pool.fetch(
            "SELECT *" + where + f" ORDER BY {column} {order}, cron_id LIMIT $6 OFFSET $7",
            *args,
            body.limit,
            body.offset,
        )
        found = [c for c in (_out(_row(r)) for r in rows) if c is not None]
        if body.select:
            found = [{k: v for k, v in c.items() if k in body.select} for c in found]
        return found

    # -- the scheduler -------------------------------------------------------------------------

    async def claim(self) -> list[dict[str, Any]]:
        """Due ticks, each claimed by exactly one replica (row locks, SKIP LOCKED)."""
        await self.ready()
        claimed: list[dict[str, Any]] = []
        async with self.pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                "SELECT * FROM langgraph_crons WHERE enabled AND next_run_date <= now()"
                " ORDER BY next_run_date LIMIT 50 FOR UPDATE SKIP LOCKED"
            )
            now = datetime.now(UTC)
            for row in rows:
                cron = dict(row)
                tick: datetime = cron["next_run_date"]
                ended = cron["end_time"] is not None and tick > cron["end_time"]
                following = next_after(cron["schedule"], max(tick, now))
                await conn.execute(
                    "UPDATE langgraph_crons SET next_run_date = $3, enabled = $4"
                    " WHERE tenant_id = $1 AND cron_id = $2",
                    cron["tenant_id"],
                    cron["cron_id"],
                    following,
                    not ended and (cron["end_time"] is None or following <= cron["end_time"]),
                )
                if ended:
                    continue
                run_id = str(uuid.uuid5(uuid.UUID(cron["cron_id"]), tick.isoformat()))
                await conn.execute(
                    "INSERT INTO langgraph_cron_fires (tenant_id, cron_id, tick, run_id)"
                    " VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                    cron["tenant_id"],
                    cron["cron_id"],
                    tick,
                    run_id,
                )
                claimed.append({**cron, "run_id": run_id, "tick": tick})
        return claimed

    async def unfinished(self) -> list[dict[str, Any]]:
        """Fires claimed by a replica that did not create their run (it died, or failed)."""
        rows = await self.pool.fetch(
            "SELECT c.*, f.run_id, f.tick FROM langgraph_cron_fires f"
            " JOIN langgraph_crons c USING (tenant_id, cron_id)"
            " WHERE NOT f.fired AND f.claimed_at < now() - make_interval(secs => $1)"
            " LIMIT 50",
            RETRY_AFTER_S,
        )
        return [dict(r) for r in rows]

    async def fire(self, cron: dict[str, Any]) -> None:
        payload = cron["payload"]
        if isinstance(payload, str):
            payload = json.loads(payload)
        principal = Principal(tenant_id=cron["tenant_id"], user_id=cron["user_id"])
        body = RunCreate.model_validate(
            {
                "assistant_id": cron["assistant_id"],
                "multitask_strategy": "enqueue",
                **payload,
                "metadata": {"cron_id": cron["cron_id"], "cron_tick": cron["tick"].isoformat()},
            }
        )
        thread_id = cron["thread_id"]
        if thread_id is None:
            thread_id = str(uuid.uuid5(uuid.UUID(cron["run_id"]), "thread"))
            await self.svc.store.create_thread(
                cron["tenant_id"], thread_id, None, {"cron_id": cron["cron_id"]}
            )
        try:
            await self.svc.create(
                principal,
                thread_id,
                body,
                run_id=cron["run_id"],
                # A thread made for this tick goes when its run ends, unless the cron keeps it.
                delete_thread=cron["thread_id"] is None and cron["on_run_completed"] == "delete",
                asked=False,  # a tick: no one's question now (and the cron keeps no API key)
            )
        except asyncpg.UniqueViolationError:
            pass  # created before (a replica died after creating it): exactly once
        except HTTPException as exc:
            # Refused for good (the assistant or thread is gone): recorded, not retried.
            log.warning("cron %s tick not run: %s", cron["cron_id"], exc.detail)
        await self.pool.execute(
            "UPDATE langgraph_cron_fires SET fired = true"
            " WHERE tenant_id = $1 AND cron_id = $2 AND tick = $3",
            cron["tenant_id"],
            cron["cron_id"],
            cron["tick"],
        )

    async def run_forever(self) -> None:
        while True:
            try:
                for cron in [*await self.claim(), *await self.unfinished()]:
                    try:
                        await self.fire(cron)
                    except Exception:
                        log.warning("cron %s tick failed; retried", cron["cron_id"], exc_info=True)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("cron scheduler pass failed", exc_info=True)
            await asyncio.sleep(TICK_S)


async def start_scheduler(crons: Crons) -> asyncio.Task[None]:
    task = asyncio.create_task(crons.run_forever(), name="langgraph-crons")
    return task


async def stop_scheduler(task: asyncio.Task[None]) -> None:
    await cancel_and_wait(task)
