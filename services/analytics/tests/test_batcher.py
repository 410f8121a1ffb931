"""The batcher without NATS or ClickHouse: inserts in the background, grouped while one runs,
acks only what was stored (in one write), NAKs a failed insert, drains on close."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from typing import Any, cast

from nats.aio.msg import Msg
from prometheus_client import CollectorRegistry

from agentbus.analytics.batcher import Batcher, Metrics, ack_all
from agentbus.analytics.store import ClickHouseStore
from agentbus.contracts.streams import ANALYTICS_DOMAIN_EVENTS


class FakeConnection:
    """What `ack_all` writes to: nats-py's command buffer."""

    def __init__(self) -> None:
        self.is_connected = True
        self.commands: list[bytes] = []
        self.flushes = 0

    async def _send_command(self, cmd: bytes, priority: bool = False) -> None:
        self.commands.append(cmd)

    async def _flush_pending(self, force_flush: bool = False) -> None:
        self.flushes += 1

    def acked(self) -> list[str]:
        lines = b"".join(self.commands).split(b"\r\n")
        return [line.split()[1].decode() for line in lines if line.startswith(b"PUB ")]


class FakeMsg(Msg):
    def __init__(self, nc: FakeConnection, n: int) -> None:
        super().__init__(cast(Any, nc), subject="s", reply=f"$JS.ACK.x.{n}", data=b"{}")
        self.naks: list[float | None] = []

    async def nak(self, delay: float | None = None) -> None:
        self.naks.append(delay)


class FakeStore:
    """Inserts in the calling thread, as the real store does; `gate` holds them while unset."""

    def __init__(self) -> None:
        self.inserts: list[list[Sequence[Any]]] = []
        self.gate = threading.Event()
        self.gate.set()
        self.started = threading.Event()
        self.fail = False

    def insert(self, table: str, rows: Sequence[Sequence[Any]], columns: Sequence[str]) -> None:
        self.started.set()
        self.gate.wait(10)
        if self.fail:
            raise RuntimeError("Code: 241. MEMORY_LIMIT_EXCEEDED\nmore")
        self.inserts.append(list(rows))


def batcher(store: FakeStore, batch_size: int, max_insert_rows: int = 0) -> Batcher:
    return Batcher(
        ANALYTICS_DOMAIN_EVENTS,
        cast(ClickHouseStore, store),
        Metrics(CollectorRegistry()),
        batch_size,
        60.0,
        max_insert_rows=max_insert_rows,
    )


def items(nc: FakeConnection, start: int, n: int) -> list[tuple[str, tuple[Any, ...], Msg]]:
    return [("events", (i,), FakeMsg(nc, i)) for i in range(start, start + n)]


async def until(check: Any, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.005)


async def test_a_full_buffer_is_inserted_in_the_background_and_acked_after() -> None:
    nc, store = FakeConnection(), FakeStore()
    b = batcher(store, batch_size=3)
    store.gate.clear()
    await b.add_all(items(nc, 0, 3))  # returns while the insert is held
    await until(store.started.is_set)
    assert nc.acked() == [] and store.inserts == []
    await b.add_all(items(nc, 3, 1))  # the next fetch goes on meanwhile
    assert b.pending == 1
    store.gate.set()
    await until(lambda: len(nc.acked()) == 3)
    assert store.inserts == [[(0,), (1,), (2,)]]
    assert nc.acked() == ["$JS.ACK.x.0", "$JS.ACK.x.1", "$JS.ACK.x.2"]
    assert len(nc.commands) == 1  # one write for the batch
    await b.close()
    assert store.inserts[-1] == [(3,)]
    assert len(nc.acked()) == 4


async def test_buffers_filled_during_an_insert_go_to_the_next_one_together() -> None:
    nc, store = FakeConnection(), FakeStore()
    b = batcher(store, batch_size=2, max_insert_rows=6)
    store.gate.clear()
    await b.add_all(items(nc, 0, 2))
    await until(store.started.is_set)
    await b.add_all(items(nc, 2, 5))  # below the cap of 6: does not wait
    assert b.pending == 5

    # At the cap the caller waits for the running insert.
    more = asyncio.create_task(b.add_all(items(nc, 7, 3)))
    await asyncio.sleep(0.05)
    assert not more.done() and b.pending == 6
    store.gate.set()
    await more
    await b.close()
    assert [len(rows) for rows in store.inserts] == [2, 6, 2]
    assert [row for rows in store.inserts for row in rows] == [(i,) for i in range(10)]
    assert sorted(nc.acked(), key=lambda r: int(r.rsplit(".", 1)[1])) == [
        f"$JS.ACK.x.{i}" for i in range(10)
    ]


async def test_without_grouping_a_full_buffer_waits_for_the_running_insert() -> None:
    nc, store = FakeConnection(), FakeStore()
    b = batcher(store, batch_size=2)
    store.gate.clear()
    await b.add_all(items(nc, 0, 2))
    await until(store.started.is_set)
    more = asyncio.create_task(b.add_all(items(nc, 2, 2)))
    await asyncio.sleep(0.05)
    assert not more.done()
    store.gate.set()
    await more
    await b.close()
    assert [len(rows) for rows in store.inserts] == [2, 2]


async def test_a_failed_insert_naks_with_the_consumer_delay_and_acks_nothing() -> None:
    nc, store = FakeConnection(), FakeStore()
    store.fail = True
    b = batcher(store, batch_size=2)
    batch = items(nc, 0, 2)
    await b.add_all(batch)
    await b.close()
    assert nc.acked() == []
    assert [cast(FakeMsg, msg).naks for _, _, msg in batch] == [[1.0], [1.0]]


async def test_after_close_messages_are_naked_back_at_once() -> None:
    nc, store = FakeConnection(), FakeStore()
    b = batcher(store, batch_size=10)
    await b.close()
    late = items(nc, 0, 2)
    await b.add_all(late)
    assert [cast(FakeMsg, msg).naks for _, _, msg in late] == [[None], [None]]
    assert store.inserts == []


async def test_the_timer_flushes_a_buffer_below_the_batch_size() -> None:
    nc, store = FakeConnection(), FakeStore()
    b = Batcher(
        ANALYTICS_DOMAIN_EVENTS,
        cast(ClickHouseStore, store),
        Metrics(CollectorRegistry()),
        100,
        0.05,
    )
    b.start()
    try:
        await b.add_all(items(nc, 0, 3))
        await until(lambda: len(nc.acked()) == 3)
        assert store.inserts == [[(0,), (1,), (2,)]]
    finally:
        await b.close()


async def test_ack_all_skips_acked_messages_and_falls_back_without_the_buffer() -> None:
    nc = FakeConnection()
    msgs = [FakeMsg(nc, i) for i in range(3)]
    msgs[1]._ackd = True
    await ack_all(msgs)
    assert nc.acked() == ["$JS.ACK.x.0", "$JS.ACK.x.2"]
    assert all(msg._ackd for msg in msgs) and nc.flushes == 1
    await ack_all(msgs)  # nothing left to ack: nothing written
    assert len(nc.commands) == 1

    class Plain:
        """A client without nats-py's command buffer: each message is acked with Msg.ack."""

        def __init__(self) -> None:
            self.published: list[str] = []

        async def publish(self, subject: str, payload: bytes = b"", reply: str = "") -> None:
            self.published.append(subject)

    plain = Plain()
    others = [Msg(cast(Any, plain), subject="s", reply=f"r{i}") for i in range(2)]
    await ack_all(others)
    assert plain.published == ["r0", "r1"]


async def test_closing_while_a_fetch_waits_at_the_cap_stores_the_buffer_and_naks_the_rest() -> None:
    nc, store = FakeConnection(), FakeStore()
    b = batcher(store, batch_size=2, max_insert_rows=4)
    store.gate.clear()
    await b.add_all(items(nc, 0, 2))
    await until(store.started.is_set)
    rest = items(nc, 2, 6)
    waiting = asyncio.create_task(b.add_all(rest))  # 4 buffered, then waits at the cap
    await asyncio.sleep(0.05)
    assert not waiting.done() and b.pending == 4
    closing = asyncio.create_task(b.close())
    await asyncio.sleep(0.05)
    store.gate.set()
    await closing
    await waiting
    assert [row for rows in store.inserts for row in rows] == [(i,) for i in range(6)]
    assert len(nc.acked()) == 6
    assert [cast(FakeMsg, msg).naks for _, _, msg in rest[4:]] == [[None], [None]]
