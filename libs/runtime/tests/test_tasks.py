"""`cancel_and_wait` stops a task even when its first cancellation is lost."""

from __future__ import annotations

import asyncio

import pytest

from agentbus.runtime.tasks import cancel_and_wait


async def test_a_task_that_loses_the_first_cancel_is_cancelled_again() -> None:
    lost = 0

    async def poller() -> None:
        nonlocal lost
        while True:
            try:
                await asyncio.sleep(0.01)
            except asyncio.CancelledError:
                # What Python 3.11's wait_for does when the reply and the cancel race.
                if lost == 0:
                    lost += 1
                    continue
                raise

    task = asyncio.create_task(poller())
    await asyncio.sleep(0.02)
    await asyncio.wait_for(cancel_and_wait(task, every_s=0.01), timeout=5)
    assert task.cancelled() and lost == 1


async def test_the_error_a_task_fails_with_on_its_way_out_is_raised() -> None:
    async def failing() -> None:
        try:
            await asyncio.sleep(10)
        finally:
            raise RuntimeError("closing went wrong")

    task = asyncio.create_task(failing())
    await asyncio.sleep(0)
    with pytest.raises(RuntimeError, match="closing went wrong"):
        await cancel_and_wait(task)


async def test_a_finished_task_is_left_as_it_is() -> None:
    task = asyncio.create_task(asyncio.sleep(0))
    await task
    await cancel_and_wait(task)
    assert task.done() and not task.cancelled()
