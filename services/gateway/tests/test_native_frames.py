"""The native SSE route's frame order around the end of a run (pure logic, a fake event source)."""

from __future__ import annotations

from collections.abc import AsyncIterator

from agentbus.contracts import RunEvent
from agentbus.gateway.routes.native import _native_frames


def event(seq: int, kind: str, **fields: object) -> RunEvent:
    return RunEvent(tenant_id="t", run_id="r1", thread_id="th1", seq=seq, type=kind, **fields)  # type: ignore[arg-type]


async def test_stream_end_comes_after_the_run_is_settled() -> None:
    log: list[str] = []

    async def events() -> AsyncIterator[RunEvent | None]:
        # As RunGateway._events: the `end` event is yielded, then the run's record and history
        # are settled before the iterator finishes.
        yield event(0, "token", data={"text": "hi"})
        yield None  # a heartbeat interval
        yield event(1, "end", status="success", data={"answer": "hi"})
        log.append("settled")

    async for chunk in _native_frames(events()):
        names = [line[7:] for line in chunk.decode().splitlines() if line.startswith("event: ")]
        log.append(names[0] if names else "heartbeat")

    assert log == ["token", "heartbeat", "response", "settled", "stream_end"], log
