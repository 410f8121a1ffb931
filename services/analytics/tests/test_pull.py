"""The analytics fetch loop: messages taken off the pull subscription's inbox queue; status
messages end a request (408, 404, 409) or are skipped (heartbeats); nothing is dropped."""

from __future__ import annotations

import asyncio
import json
from typing import Any, cast

from nats.aio.msg import Msg

from agentbus.analytics.pull import Inbox, next_request


class Sub:
    """nats-py's core subscription as the client fills it."""

    def __init__(self) -> None:
        self._pending_queue: asyncio.Queue[Msg] = asyncio.Queue()
        self._pending_size = 0

    def deliver(self, msg: Msg) -> None:
        self._pending_size += len(msg.data)
        self._pending_queue.put_nowait(msg)


def message(n: int) -> Msg:
    return Msg(cast(Any, None), subject="agentbus.v1.events.t.ci.x", reply=f"ack.{n}", data=b"{}")


def status(code: str) -> Msg:
    return Msg(cast(Any, None), subject="inbox", headers={"Status": code})


async def test_collect_takes_queued_messages_until_the_batch_is_full() -> None:
    sub = Sub()
    for n in range(5):
        sub.deliver(message(n))
    got: list[Msg] = []
    loop = asyncio.get_running_loop()
    await Inbox(sub).collect(got, 3, loop.time() + 1)
    assert [m.reply for m in got] == ["ack.0", "ack.1", "ack.2"]
    assert sub._pending_queue.qsize() == 2
    assert sub._pending_size == 4  # the bytes of the two left, as nats-py counts them


async def test_collect_ends_at_a_request_status_and_skips_heartbeats() -> None:
    sub = Sub()
    sub.deliver(message(0))
    sub.deliver(status("100"))  # idle heartbeat: not the end
    sub.deliver(message(1))
    sub.deliver(status("408"))  # the request expired: hand over what came
    sub.deliver(message(2))  # a later request's: stays for the next batch
    got: list[Msg] = []
    loop = asyncio.get_running_loop()
    await Inbox(sub).collect(got, 10, loop.time() + 1)
    assert [m.reply for m in got] == ["ack.0", "ack.1"]
    assert sub._pending_queue.qsize() == 1


async def test_collect_waits_for_late_messages_until_the_deadline() -> None:
    sub = Sub()
    loop = asyncio.get_running_loop()
    loop.call_later(0.05, sub.deliver, message(0))
    got: list[Msg] = []
    started = loop.time()
    await Inbox(sub).collect(got, 2, loop.time() + 0.3)
    assert [m.reply for m in got] == ["ack.0"]
    assert loop.time() - started >= 0.25  # waited for the second until the window closed


async def test_leftovers_keep_messages_and_drop_stale_statuses() -> None:
    sub = Sub()
    sub.deliver(status("408"))  # the end of a request that is over
    sub.deliver(message(0))
    sub.deliver(status("404"))
    sub.deliver(message(1))
    got: list[Msg] = []
    Inbox(sub).leftovers(got, 10)
    assert [m.reply for m in got] == ["ack.0", "ack.1"]
    assert sub._pending_queue.empty() and sub._pending_size == 0


def test_a_pull_request_expires_inside_the_window() -> None:
    body = json.loads(next_request(250, 1.0))
    assert body["batch"] == 250
    assert 0 < body["expires"] < 1_000_000_000


async def test_collect_says_which_status_ended_the_request() -> None:
    sub = Sub()
    sub.deliver(status("409"))
    got: list[Msg] = []
    loop = asyncio.get_running_loop()
    assert await Inbox(sub).collect(got, 10, loop.time() + 1) == "409"
    assert got == []
    assert await Inbox(sub).collect(got, 10, loop.time() + 0.01) is None  # the window closed
