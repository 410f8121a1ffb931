"""A2A push notifications: a task's push configs in PostgreSQL, and the pass that POSTs the task
to each config's URL when the task's state changes.

Configs are tenant-scoped (a tenant sees and changes only its own tasks' configs), at most
MAX_CONFIGS per task, and come from `CreateTaskPushNotificationConfig` /
`tasks/pushNotificationConfig/set` or inline with the message (`configuration`'s
`taskPushNotificationConfig` (v1.0) / `pushNotificationConfig` (v0.3)). Each row remembers the
task state it last told (`notified`; the state at the time the config was set), so a config
hears of each later change: `working`, then the end (`completed`, `failed`, `canceled`,
`input-required`). A change that happens between two passes (1 s apart) is told as the newer
state only.

Delivery works like the LangGraph run webhooks (`langgraph/followups.py`) and shares their
POST and their SSRF guard: every gateway replica runs the pass, rows are leased with `FOR UPDATE
SKIP LOCKED`, a failing receiver is tried WEBHOOK_ATTEMPTS times 2^n s apart, redirects are not
followed, and a URL must match `AGENTBUS_WEBHOOK_ALLOWED_URLS` both when it is set (else the A2A
invalid-params error) and again when it is posted to. Delivery is at least once: receivers key
on the task id and state. A task not ended after WATCH_S is no longer watched; the configs of
a task whose run (or thread) was deleted go when the pass next looks at them.

The body is what the spec names: for a config set over v1.0 a StreamResponse holding the Task
(`{"task": {...}}`), over v0.3 the Task object (`kind: task`); the config's token goes in
`X-A2A-Notification-Token`, its authentication as `Authorization: <scheme> <credentials>`.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import asyncpg
from fastapi import HTTPException, Request

from agentbus.runtime.migrations import Migration
from agentbus.runtime.stores.schema import LockKey, migrate
from agentbus.runtime.tasks import cancel_and_wait

from ..langgraph.followups import WEBHOOK_ATTEMPTS, WebhookPolicy, post_webhook
from ..runs import RunGateway
from ..store import GatewayStore
from .tasks import task_of_row
from .wire import (
    INVALID_PARAMS,
    NOTIFIABLE,
    TERMINAL,
    Encoder,
    PushConfig,
    RpcError,
    State,
    TaskView,
    Version,
    push_headers,
)

log = logging.getLogger("agentbus.gateway.a2a.push")

SCHEMA = """
CREATE TABLE IF NOT EXISTS a2a_push_configs (
    tenant_id        text NOT NULL,
    task_id          text NOT NULL,
    config_id        text NOT NULL,
    version          text NOT NULL,
    url              text NOT NULL,
    token            text,
    auth_scheme      text,
    auth_credentials text,
    notified         text NOT NULL,
    trying           text,
    attempts         integer NOT NULL DEFAULT 0,
    next_check       timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, task_id, config_id)
);
CREATE INDEX IF NOT EXISTS a2a_push_configs_due ON a2a_push_configs (next_check)
    WHERE next_check IS NOT NULL;
"""

MIGRATIONS = (Migration(1, "A2A push notification configs", (SCHEMA,)),)

MAX_CONFIGS = 10
TICK_S = 1.0
LEASE_S = 30.0
WATCH_S = 24 * 3600.0
BATCH = 50


def next_step(state: State | None, notified: str, stale: bool) -> Literal["send", "wait", "done"]:
    """What a config whose task is now in `state` (None: the task is gone) and which last heard
    of `notified` needs: the task sent, another look a tick later, or nothing ever again."""
    if state is None:
        return "done"
    if state != notified and state in NOTIFIABLE:
        return "send"
    return "done" if state in TERMINAL or stale else "wait"


def config_of(row: dict[str, Any]) -> PushConfig:
    return PushConfig(
        url=row["url"],
        id=row["config_id"],
        task_id=row["task_id"],
        token=row["token"],
        scheme=row["auth_scheme"],
        credentials=row["auth_credentials"],
    )


class PushConfigs:
    def __init__(
        self, pool: asyncpg.Pool, runs: RunGateway, store: GatewayStore, policy: WebhookPolicy
    ) -> None:
        self.pool = pool
        self.runs = runs
        self.store = store
        self.policy = policy

    async def ensure_schema(self) -> None:
        await migrate(self.pool, LockKey.A2A_PUSH, MIGRATIONS)

    def check(self, url: str) -> None:
        """RpcError (invalid params) when the URL is not on the operator's allow-list."""
        try:
            self.policy.check(url)
        except HTTPException as exc:
            raise RpcError(INVALID_PARAMS, f"push notification URL refused: {exc.detail}") from None

    # -- the configs -------------------------------------------------------------------------

    async def put(
        self, tenant_id: str, config: PushConfig, version: Version, state: State
    ) -> PushConfig:
        """Store (or replace, by id) a config of a task now in `state`; its id defaults to the
        task id. Only later changes of the task are told to it."""
        self.check(config.url)
        config_id = config.id or config.task_id
        others = await self.pool.fetchval(
            "SELECT count(*) FROM a2a_push_configs"
            " WHERE tenant_id = $1 AND task_id = $2 AND config_id <> $3",
            tenant_id,
            config.task_id,
            config_id,
        )
        if int(others or 0) >= MAX_CONFIGS:
            raise RpcError(INVALID_PARAMS, f"a task has at most {MAX_CONFIGS} push configs")
        await self.pool.execute(
            "INSERT INTO a2a_push_configs (tenant_id, task_id, config_id, version, url, token,"
            " auth_scheme, auth_credentials, notified, next_check)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9,"
            "  CASE WHEN $10 THEN NULL ELSE now() END)"
            " ON CONFLICT (tenant_id, task_id, config_id) DO UPDATE SET"
            " version = EXCLUDED.version, url = EXCLUDED.url, token = EXCLUDED.token,"
            " auth_scheme = EXCLUDED.auth_scheme, auth_credentials = EXCLUDED.auth_credentials,"
            " notified = EXCLUDED.notified, next_check = EXCLUDED.next_check,"
            " trying = NULL, attempts = 0",
            tenant_id,
            config.task_id,
            config_id,
            version,
            config.url,
            config.token,
            config.scheme,
            config.credentials,
            state,
            state in TERMINAL,
        )
        return PushConfig(
            config.url, config_id, config.task_id, config.token, config.scheme, config.credentials
        )

    async def get(self, tenant_id: str, task_id: str, config_id: str | None) -> PushConfig | None:
        """One config of the task; without an id, its first."""
        row = await self.pool.fetchrow(
            "SELECT * FROM a2a_push_configs WHERE tenant_id = $1 AND task_id = $2"
            " AND ($3::text IS NULL OR config_id = $3) ORDER BY created_at, config_id LIMIT 1",
            tenant_id,
            task_id,
            config_id,
        )
        return None if row is None else config_of(dict(row))

    async def list(
        self, tenant_id: str, task_id: str, limit: int, offset: int
    ) -> tuple[list[PushConfig], int]:
        rows = await self.pool.fetch(
            "SELECT *, count(*) OVER () AS total FROM a2a_push_configs"
            " WHERE tenant_id = $1 AND task_id = $2 ORDER BY created_at, config_id"
            " LIMIT $3 OFFSET $4",
            tenant_id,
            task_id,
            limit,
            offset,
        )
        total = int(rows[0]["total"]) if rows else 0
        if not rows and offset:
            total = int(
                await self.pool.fetchval(
                    "SELECT count(*) FROM a2a_push_configs WHERE tenant_id = $1 AND task_id = $2",
                    tenant_id,
                    task_id,
                )
                or 0
            )
        return [config_of(dict(r)) for r in rows], total

    async def delete(self, tenant_id: str, task_id: str, config_id: str) -> bool:
        done = await self.pool.execute(
            "DELETE FROM a2a_push_configs WHERE tenant_id = $1 AND task_id = $2 AND config_id = $3",
            tenant_id,
            task_id,
            config_id,
        )
        return str(done).endswith(" 1")

    # -- the pass ----------------------------------------------------------------------------

    async def deliver_due(self) -> int:
        """Tell the leased configs whose task changed state; returns how many were looked at."""
        rows = await self.pool.fetch(
            "UPDATE a2a_push_configs SET next_check = now() + make_interval(secs => $1)"
            " WHERE (tenant_id, task_id, config_id) IN (SELECT tenant_id, task_id, config_id"
            "  FROM a2a_push_configs WHERE next_check <= now() ORDER BY next_check LIMIT $2"
            "  FOR UPDATE SKIP LOCKED)"
            " RETURNING *",
            LEASE_S,
            BATCH,
        )
        tasks: dict[tuple[str, str], asyncio.Task[TaskView | None]] = {}
        jobs = []
        for row in rows:
            key = (row["tenant_id"], row["task_id"])
            if key not in tasks:  # one read per task, however many configs it has
                tasks[key] = asyncio.ensure_future(self._read(*key))
            jobs.append(self._deliver(dict(row), tasks[key]))
        for failed in await asyncio.gather(*jobs, return_exceptions=True):
            if isinstance(failed, Exception):
                log.warning("A2A push of one config failed", exc_info=failed)
        return len(rows)

    async def _read(self, tenant_id: str, task_id: str) -> TaskView | None:
        row = await self.store.run(tenant_id, task_id)
        return None if row is None else await task_of_row(self.runs, tenant_id, row)

    async def _deliver(self, row: dict[str, Any], reading: asyncio.Task[TaskView | None]) -> None:
        try:
            task = await reading
        except Exception:
            log.warning("push pass could not read task %s", row["task_id"], exc_info=True)
            await self._later(row, TICK_S, row["trying"], row["attempts"])
            return
        if task is None:  # the run or its thread was deleted: so is the config
            await self.delete(row["tenant_id"], row["task_id"], row["config_id"])
            return
        stale = datetime.now(UTC) - row["created_at"] > timedelta(seconds=WATCH_S)
        step = next_step(task.state, row["notified"], stale)
        if step == "done":
            await self._told(row, row["notified"], done=True)
            return
        if step == "wait":
            await self._later(row, TICK_S, row["trying"], row["attempts"])
            return
        attempts = row["attempts"] if row["trying"] == task.state else 0
        config = config_of(row)
        try:
            payload = Encoder("0.3" if row["version"] == "0.3" else "1.0").push_payload(task)
            await post_webhook(self.policy, config.url, payload, push_headers(config))
        except HTTPException as exc:  # off the allow-list since it was set: never sent
            log.warning("push to %s for task %s refused: %s", config.url, task.id, exc.detail)
        except Exception as exc:
            if attempts + 1 < WEBHOOK_ATTEMPTS:
                log.info("push of task %s (%s) failed (%s); retried", task.id, task.state, exc)
                await self._later(row, 2.0 ** (attempts + 1), task.state, attempts + 1)
                return
            log.warning(
                "push of task %s (%s) given up after %d tries: %s",
                task.id,
                task.state,
                attempts + 1,
                exc,
            )
        await self._told(row, task.state, done=task.state in TERMINAL)

    async def _later(
        self, row: dict[str, Any], seconds: float, trying: str | None, attempts: int
    ) -> None:
        await self.pool.execute(
            "UPDATE a2a_push_configs SET next_check = now() + make_interval(secs => $4),"
            " trying = $5, attempts = $6"
            " WHERE tenant_id = $1 AND task_id = $2 AND config_id = $3",
            row["tenant_id"],
            row["task_id"],
            row["config_id"],
            seconds,
            trying,
            attempts,
        )

    async def _told(self, row: dict[str, Any], state: str, *, done: bool) -> None:
        """The config has heard of `state`; `done`: nothing more will change."""
        await self.pool.execute(
            "UPDATE a2a_push_configs SET notified = $4, trying = NULL, attempts = 0,"
            " next_check = CASE WHEN $5 THEN NULL ELSE now() + make_interval(secs => $6) END"
            " WHERE tenant_id = $1 AND task_id = $2 AND config_id = $3",
            row["tenant_id"],
            row["task_id"],
            row["config_id"],
            state,
            done,
            TICK_S,
        )

    async def run_forever(self) -> None:
        while True:
            try:
                await self.deliver_due()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("A2A push pass failed", exc_info=True)
            await asyncio.sleep(TICK_S)


def push_of(request: Request) -> PushConfigs:
    pushes: PushConfigs | None = getattr(request.app.state, "a2a_push", None)
    if pushes is None:
        raise HTTPException(503, "The gateway is starting")
    return pushes


async def start_push(pushes: PushConfigs) -> asyncio.Task[None]:
    await pushes.ensure_schema()
    return asyncio.create_task(pushes.run_forever(), name="a2a-push")


async def stop_push(task: asyncio.Task[None]) -> None:
    await cancel_and_wait(task)
