"""The orchestrator's side of one-run-per-thread (the `thread_runs` KV bucket, see
agentbus.runtime.thread_runs): honour a stop asked before the run was picked up, release the
thread when a run ends — whichever gateway submitted it — and roll back a run stopped with
`rollback` before the next run starts.
"""

from __future__ import annotations

import logging
from typing import Any

from nats.js.client import JetStreamContext

from agentbus.contracts import RunRequested
from agentbus.runtime.thread_runs import StopAction, ThreadRuns, ThreadRunsKV

log = logging.getLogger("agentbus.orchestrator.multitask")


class Multitask:
    def __init__(self, js: JetStreamContext, checkpointer: Any) -> None:
        self.js = js
        self.checkpointer = checkpointer
        self._kv: ThreadRunsKV | None = None

    async def kv(self) -> ThreadRunsKV:
        if self._kv is None:
            self._kv = await ThreadRunsKV.open(self.js)
        return self._kv

    async def pending_stop(self, run: RunRequested) -> StopAction | None:
        """A stop asked of this run while it was waiting (its RunControl found nobody)."""
        value, _ = await (await self.kv()).read(run.tenant_id, run.thread_id)
        if value.active is not None and value.active.run_id == run.run_id:
            return value.stop
        return None

    async def release(self, run: RunRequested, thread_key: str) -> None:
        """The run is over: roll back if asked, then let the next queued run start."""

        async def rollback_if_asked(value: ThreadRuns) -> None:
            if value.stop == "rollback":
                await self.delete_checkpoints(thread_key, run.run_id)

        nxt = await (await self.kv()).release(
            run.tenant_id, run.thread_id, run.run_id, before_next=rollback_if_asked
        )
        if nxt is not None:
            log.info("next run on the thread started", extra={"next_run_id": nxt.run_id})

    async def delete_checkpoints(self, thread_key: str, run_id: str) -> None:
        """Rollback: drop the checkpoints (and their pending writes) this run wrote, so the
        thread's state is what it was before the run. Blobs are shared by version and stay."""
        pool = getattr(self.checkpointer, "conn", None)
        if pool is None:
            log.warning("rollback skipped: the checkpointer has no connection pool")
            return
        async with pool.connection() as conn:
            await conn.execute(
                "DELETE FROM checkpoint_writes w USING checkpoints c"
                " WHERE w.thread_id = c.thread_id AND w.checkpoint_ns = c.checkpoint_ns"
                " AND w.checkpoint_id = c.checkpoint_id"
                " AND c.thread_id = %s AND c.metadata->>'run_id' = %s",
                (thread_key, run_id),
            )
            await conn.execute(
                "DELETE FROM checkpoints WHERE thread_id = %s AND metadata->>'run_id' = %s",
                (thread_key, run_id),
            )
        log.info("rolled back the run's checkpoints")
