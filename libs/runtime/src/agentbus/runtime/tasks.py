"""Stopping a background task so that it really stops.

On Python 3.11, `asyncio.wait_for` swallows a cancellation that arrives in the same loop turn
as its inner future's result (CPython gh-86296, fixed in 3.12). nats-py wraps every request in
`wait_for`, so a loop that samples or polls NATS can lose the one `cancel()` meant to stop it and
run on, while `await task` waits forever. `cancel_and_wait` cancels again until the task is done.
"""

from __future__ import annotations

import asyncio
from typing import Any


async def cancel_and_wait(task: asyncio.Task[Any], *, every_s: float = 0.1) -> None:
    """Cancel `task`, repeating every `every_s` until it has finished.

    A task that was cancelled is fine; one that failed on its way out raises its error here,
    as `await task` would.
    """
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=every_s)
    if not task.cancelled():
        task.result()
