"""`GET /threads/{thread_id}/stream`: the thread's runs, one after another, for as long as the
client stays (LangGraph's join-thread-stream: "remains open indefinitely").

It starts with the run the thread is busy with (from its first event), or, on an idle thread,
waits for the next run; every later run follows as it starts. `Last-Event-ID: -` replays every
run of the thread from the first. Frame ids are `<run_id>:<seq>[.k]`, so a client that
reconnects with the last id it saw continues exactly after it: the rest of that run, then the
runs after it. Modes: `run_modes` (default: each run in the modes it was started with) or any of
the run stream modes; LangGraph's `lifecycle` and `state_update` are not served (422).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from ..sse import HEARTBEAT
from .encode import Encoder, frame, parse_event_id
from .models import modes_of

if TYPE_CHECKING:
    from .runs import LangGraphRuns

POLL_S = 0.5
# Heartbeats while idle: one every this many polls.
IDLE_BEAT = 30
NOT_SERVED = ("lifecycle", "state_update")


def thread_modes(asked: list[str]) -> list[str] | None:
    """The modes a thread stream was asked for; None for each run's own. ValueError if bad."""
    asked = [m for m in asked if m and m != "run_modes"]
    for mode in asked:
        if mode in NOT_SERVED:
            raise ValueError(f"stream mode {mode!r} is not served by this server; use run_modes")
    return modes_of(asked) if asked else None


def parse_thread_event_id(value: str | None) -> tuple[str, tuple[int, int]] | str | None:
    """Last-Event-ID -> None (from now), "-" (from the thread's first run), or (run id, frame
    id within the run). ValueError when malformed."""
    if value is None or value == "":
        return None
    if value in ("-", "-1"):
        return "-"
    run_id, sep, within = value.rpartition(":")
    if not sep or not run_id:
        raise ValueError(value)
    return run_id, parse_event_id(within)


async def _unended(svc: LangGraphRuns, tenant: str, row: dict[str, Any]) -> bool:
    return await svc.run_status(tenant, row) in ("pending", "running")


async def thread_frames(
    svc: LangGraphRuns,
    tenant: str,
    thread_id: str,
    modes: list[str] | None,
    resume: tuple[str, tuple[int, int]] | str | None,
) -> AsyncIterator[bytes]:
    done: set[str] = set()
    after: dict[str, tuple[int, int]] = {}
    # Runs listed oldest first; only those created after `floor` (by position) are still due.
    listed = list(reversed(await svc.records.runs(tenant, thread_id, 1000, 0)))
    if resume == "-":
        pass  # every run, from the first
    elif isinstance(resume, tuple):
        run_id, within = resume
        ids = [r["run_id"] for r in listed]
        if run_id in ids:
            done.update(ids[: ids.index(run_id)])
            after[run_id] = within
        else:
            done.update(ids)
    else:
        # From now: the runs not yet ended (the active one and those queued after it).
        for row in listed:
            if not await _unended(svc, tenant, row):
                done.add(row["run_id"])
    idle = 0
    while True:
        due = [
            r
            for r in reversed(await svc.records.runs(tenant, thread_id, 1000, 0))
            if r["run_id"] not in done
        ]
        if not due:
            idle += 1
            if idle % IDLE_BEAT == 0:
                yield HEARTBEAT
            await asyncio.sleep(POLL_S)
            continue
        idle = 0
        row = due[0]
        run_id = row["run_id"]
        run_modes = modes or list(row.get("stream_modes") or ["values"])
        encoder = Encoder(frozenset(run_modes), run_id, thread_id, row["assistant_id"])
        start = after.pop(run_id, (-1, 0))
        if start == (-1, 0):
            yield frame("metadata", {"run_id": run_id, "thread_id": thread_id, "attempt": 1})
        async for event in svc.events(tenant, row):
            if event is None:
                yield HEARTBEAT
                continue
            if event.type == "metadata":
                continue
            for k, (name, data) in enumerate(encoder.parts(event)):
                if (event.seq, k) <= start:
                    continue
                frame_id = str(event.seq) if k == 0 else f"{event.seq}.{k}"
                yield frame(name, data, f"{run_id}:{frame_id}")
        done.add(run_id)
