"""Follow one run's events in stream order, without a JetStream consumer.

Each open SSE stream used to be an ordered consumer on RUN_EVENTS: created and deleted through
the JetStream API, flow-controlled, held on every server of a cluster and counted against the
stream's consumer limit (a 503 past it). Here a stream is a core subscription on the run's
republished subject plus, for what was stored before it, a replay by batched direct get: interest
in a subject and one request, nothing the server keeps per stream beyond the subscription.

RUN_EVENTS republishes every message it stores (`StreamSpec.republish`) after storing it, in its
own order, with `Nats-Sequence` and `Nats-Last-Sequence` (the sequence of the subject's previous
message). So:

- subscribe first, then replay: an event stored in between arrives both ways, and any stream
  sequence at or below the last one delivered is dropped;
- a republished message whose `Nats-Last-Sequence` is past the last one delivered shows a gap
  (the subscription dropped messages under a slow reader, or a reconnect lost some): replay from
  the stream to fill it, then go on. A replica answering a direct get may lag the leader, so the
  replay is asked again, briefly, until it reaches the gap;
- a silent interval also replays: a lost last message (the run's `end`) is found within one
  heartbeat instead of never.

What a reader gets is exactly what the stream stored: the same events, once each, in the same
order as an ordered consumer delivered them. A publish the stream refused never reaches a reader.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from agentbus.contracts import subjects as s
from agentbus.contracts.streams import RUN_EVENTS

# Messages per direct-get request; a run has tens of events.
REPLAY_BATCH = 256
# How long a replay may wait for a lagging replica to reach a gap's sequence.
GAP_PATIENCE_S = 2.0
REQUEST_TIMEOUT_S = 5.0
# Messages a subscription holds for a slow reader; past it NATS drops them and the feed reads
# them from the stream when it notices the gap. Bounds the gateway's memory per stream.
PENDING_MSGS = 1000


class ReplayFailed(RuntimeError):
    """The stream could not be read (no responders, permissions, timeout)."""


@dataclass(frozen=True)
class Stored:
    """One stored event: its stream sequence and its body."""

    seq: int
    data: bytes


def _sequence(msg: Msg, name: str) -> int:
    return int((msg.headers or {}).get(name, 0))


class RunEventFeed:
    """One run's stored events: `open()`, then iterate; `close()` unsubscribes."""

    def __init__(
        self,
        nc: NatsClient,
        run_id: str,
        stream: str = RUN_EVENTS.name,
        pending_msgs: int = PENDING_MSGS,
    ) -> None:
        self.nc = nc
        self.pending_msgs = pending_msgs
        self.subject = s.run_events(run_id)
        self.stored_subject = s.run_events_stored(run_id)
        self.stream = stream
        self.last = 0  # the stream sequence of the last event handed out
        self._sub: Subscription | None = None
        self._ready: list[Stored] = []

    async def open(self) -> None:
        """Subscribe, then read what is stored: fails here (ReplayFailed) rather than later."""
        self._sub = await self.nc.subscribe(
            self.stored_subject, pending_msgs_limit=self.pending_msgs
        )
        try:
            await self.nc.flush()  # the server has the interest before the replay reads
            self._ready = await self.replay()
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        if self._sub is not None:
            sub, self._sub = self._sub, None
            # A closing connection has nothing left to release.
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    async def next(self, timeout: float) -> Stored | None:
        """The next stored event after `last`, or None after `timeout` s with nothing new."""
        while True:
            if self._ready:
                item = self._ready.pop(0)
                if item.seq <= self.last:
                    continue
                self.last = item.seq
                return item
            assert self._sub is not None, "open() first"
            try:
                msg = await self._sub.next_msg(timeout=timeout)
            except TimeoutError:
                # Silence: also the moment to notice a lost last message (one cheap request;
                # the replay only when the stream holds more than was handed out).
                if await self._last_stored() > self.last:
                    # Unreadable now (a NATS restart): the next silent interval asks again. A
                    # gap's replay that fails ends the stream instead; the client resumes it.
                    with contextlib.suppress(ReplayFailed):
                        self._ready = await self.replay()
                    if self._ready:
                        continue
                return None
            seq = _sequence(msg, "Nats-Sequence")
            if seq <= self.last:
                continue  # already handed out (it came by the replay too)
            if _sequence(msg, "Nats-Last-Sequence") > self.last:
                # Messages stored between the last one handed out and this one never arrived.
                self._ready = await self.replay(until=seq)
                if not self._ready or self._ready[-1].seq < seq:
                    self._ready.append(Stored(seq, msg.data))  # the gap is gone for good
                continue
            self.last = seq
            return Stored(seq, msg.data)

    async def replay(self, until: int = 0) -> list[Stored]:
        """Stored events after `last`, by batched direct get; with `until`, waits (a little)
        for a lagging replica to have reached that sequence."""
        deadline = asyncio.get_running_loop().time() + GAP_PATIENCE_S
        delay = 0.01
        while True:
            got = await self._direct_get(self.last + 1)
            if not until or (got and got[-1].seq >= until):
                return got
            if asyncio.get_running_loop().time() >= deadline:
                return got  # the gap's messages are gone (max_age): go on without them
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.2)

    async def _last_stored(self) -> int:
        """The stream sequence of the run's last stored event (0: none), by direct get."""
        try:
            msg = await self.nc.request(
                f"$JS.API.DIRECT.GET.{self.stream}.{self.subject}", b"", timeout=REQUEST_TIMEOUT_S
            )
        except Exception:  # unknown is "maybe": the replay will tell
            return self.last + 1
        if (msg.headers or {}).get("Status"):
            return 0  # 404: nothing stored for the run
        return _sequence(msg, "Nats-Sequence")

    async def _direct_get(self, start: int) -> list[Stored]:
        out: list[Stored] = []
        inbox = self.nc.new_inbox()
        sub = await self.nc.subscribe(inbox)
        try:
            while True:
                request = {"seq": start, "next_by_subj": self.subject, "batch": REPLAY_BATCH}
                await self.nc.publish(
                    f"$JS.API.DIRECT.GET.{self.stream}", json.dumps(request).encode(), reply=inbox
                )
                pending = 0
                while True:
                    try:
                        msg = await sub.next_msg(timeout=REQUEST_TIMEOUT_S)
                    except TimeoutError:
                        raise ReplayFailed(f"no answer from {self.stream}'s direct get") from None
                    status = (msg.headers or {}).get("Status")
                    if status is None:
                        out.append(Stored(_sequence(msg, "Nats-Sequence"), msg.data))
                        continue
                    if status == "404":
                        return out  # nothing (more) stored
                    if status == "204":  # end of this batch
                        pending = _sequence(msg, "Nats-Num-Pending")
                        break
                    raise ReplayFailed(
                        f"{self.stream} direct get answered {status}:"
                        f" {(msg.headers or {}).get('Description', '')}"
                    )
                if not pending or not out:
                    return out
                start = out[-1].seq + 1
        finally:
            await sub.unsubscribe()
