"""Bounded concurrency for a JetStream pull consumer that only holds what it can run.

FastStream's `max_workers` keeps fetching into its own queue while every worker is busy, so the
first replica up takes the whole backlog (up to `max_ack_pending`) and replicas added later, e.g.
by KEDA, sit idle. Here the handler takes a slot before it returns, and FastStream's pull loop
fetches the next message only after the handler returned: a replica holds at most its slots plus
the one message waiting for a slot (kept alive with in_progress heartbeats).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

from faststream.nats.message import NatsMessage

from agentbus.contracts.streams import ConsumerSpec

from .consuming import heartbeat

log = logging.getLogger("agentbus.runtime.slots")


class WorkSlots:
    def __init__(self, size: int, spec: ConsumerSpec) -> None:
        self.size = size
        self.spec = spec
        self._free = asyncio.Semaphore(size)
        self._tasks: set[asyncio.Task[None]] = set()
        self._closing = False

    @property
    def busy(self) -> int:
        return len(self._tasks)

    async def start(self, msg: NatsMessage, work: Callable[[], Awaitable[None]]) -> None:
        """Wait for a free slot, then run `work` in the background and return."""
        if self._closing:
            # Stopping: hand the message straight back for another replica.
            with contextlib.suppress(Exception):
                await msg.nack()
            return
        async with heartbeat(msg, self.spec):
            await self._free.acquire()
        # The task copies the current context, so its spans stay children of the consume span.
        task = asyncio.create_task(self._run(work))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, work: Callable[[], Awaitable[None]]) -> None:
        try:
            await work()
        except Exception:
            # Unacked, the message is redelivered after ack_wait; the work must be idempotent.
            log.exception("background work failed", extra={"consumer": self.spec.durable})
        finally:
            self._free.release()

    @contextlib.asynccontextmanager
    async def lent(self) -> AsyncIterator[None]:
        """Give this work's slot back while the block waits (for something other than CPU or
        I/O of its own, e.g. its tenant's turn), and take one again before it goes on: the
        replica fetches other work meanwhile. The caller keeps the message alive (heartbeat)."""
        self._free.release()
        try:
            yield
        finally:
            await self._free.acquire()

    async def drain(self, timeout: float) -> None:
        """Stop taking work and wait for what runs; whatever is left is redelivered later."""
        self._closing = True
        if not self._tasks:
            return
        _, pending = await asyncio.wait(set(self._tasks), timeout=timeout)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=5)
            log.warning("stopped with work in flight", extra={"unfinished": len(pending)})
