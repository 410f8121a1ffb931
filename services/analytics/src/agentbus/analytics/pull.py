"""A cheaper fetch loop for the analytics batch subscribers.

FastStream's batch pull loop fetches with nats-py's `PullSubscription.fetch`, which waits for
every message of a fetch with its own `next_msg` (an `asyncio.wait_for`, so a task and a timer
per message). At tens of thousands of events a second that bookkeeping cost more than decoding
the event. `fast_pull` swaps the loop of one FastStream batch subscriber for `_consume`: one
pull request (`$JS.API.CONSUMER.MSG.NEXT.<stream>.<durable>`, `batch` and `expires`) on the
subscription's own inbox, then the delivered messages are taken straight off the inbox
subscription's queue; a task and a timer only when the queue is empty. The batch then goes
straight to the handler, not through FastStream's pipeline (its telemetry middleware alone, which
reads the W3C baggage of every message of a batch, cost about a fifth of the loop): the loop
opens the batch's consume span itself (`<subject> process`, as FastStream names it) and logs a
handler that fails; its messages stay unacked and come back after the ack wait.

Same delivery semantics as FastStream's loop: a batch is handed over when it is full or when its
pull request expired (JetStream answers 408) or the window (`timeout_s`) closed; messages that
arrive after that (a late answer to an expired request) wait in the queue and open the next
batch, so nothing is dropped. Messages still unhandled when the service stops are not acked and
come back after the consumer's ack wait.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from nats.aio.msg import Msg
from nats.errors import ConnectionClosedError, ConnectionDrainingError
from nats.js import api
from opentelemetry import trace
from opentelemetry.trace import SpanKind

from agentbus.contracts.streams import ConsumerSpec

log = logging.getLogger("agentbus.analytics.pull")
tracer = trace.get_tracer("agentbus.analytics")

Handle = Callable[[list[Msg]], Awaitable[None]]

HEADER_STATUS = api.Header.STATUS
HEARTBEAT = api.StatusCode.CONTROL_MESSAGE
REQUEST_TIMEOUT = api.StatusCode.REQUEST_TIMEOUT


def _status(msg: Msg) -> str | None:
    headers = msg.headers
    if not headers:
        return None
    return headers.get(HEADER_STATUS)


class Inbox:
    """The messages JetStream delivers to one pull subscription's inbox, taken off its queue.

    `sub` is nats-py's core `Subscription` under the `PullSubscription` (no callback: the client
    puts what arrives on `_pending_queue` and counts its bytes in `_pending_size`, which we give
    back as nats-py's own `next_msg` does, or the client would call it a slow consumer).
    """

    def __init__(self, sub: Any) -> None:
        self.sub = sub
        self.queue: asyncio.Queue[Msg] = sub._pending_queue

    def _took(self, msg: Msg) -> None:
        self.sub._pending_size -= len(msg.data)

    def leftovers(self, into: list[Msg], size: int) -> None:
        """Messages already waiting (late answers to an earlier request), without status ones:
        those were meant for requests that are over."""
        queue = self.queue
        while len(into) < size and not queue.empty():
            msg = queue.get_nowait()
            self._took(msg)
            if _status(msg) is None:
                into.append(msg)

    async def collect(self, into: list[Msg], size: int, deadline: float) -> str | None:
        """Add delivered messages to `into` until it holds `size`, a status says the request is
        over (408 expired, 404 nothing, 409 conflict), or the loop clock reaches `deadline`.
        Returns that status, or None."""
        queue = self.queue
        loop = asyncio.get_running_loop()
        while len(into) < size:
            try:
                msg = queue.get_nowait()
            except asyncio.QueueEmpty:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return None
                try:
                    msg = await asyncio.wait_for(queue.get(), remaining)
                except TimeoutError:
                    return None
            self._took(msg)
            status = _status(msg)
            if status is None:
                into.append(msg)
            elif status != HEARTBEAT:
                return status
        return None


def next_request(batch: int, timeout_s: float) -> bytes:
    """The body of a pull request: `batch` messages, expiring a little before our window."""
    expires = max(int(timeout_s * 1e9) - 100_000, 1_000_000)
    return json.dumps({"batch": batch, "expires": expires}).encode()


async def handle_batch(spec: ConsumerSpec, handle: Handle, messages: list[Msg]) -> None:
    """Run the handler on one batch inside its consume span; a failure is logged, not raised."""
    with tracer.start_as_current_span(
        f"{spec.filter_subject} process",
        kind=SpanKind.CONSUMER,
        attributes={
            "messaging.system": "nats",
            "messaging.operation.type": "process",
            "messaging.destination.name": spec.filter_subject,
            "messaging.consumer.group.name": spec.durable,
            "messaging.batch.message_count": len(messages),
        },
    ) as span:
        try:
            await handle(messages)
        except Exception as exc:
            span.record_exception(exc)
            span.set_status(trace.Status(trace.StatusCode.ERROR, type(exc).__name__))
            log.exception(
                "batch handler failed; its messages come back after the ack wait",
                extra={"consumer": spec.durable, "messages": len(messages)},
            )


async def _consume(
    subscriber: Any, spec: ConsumerSpec, size: int, timeout_s: float, handle: Handle
) -> None:
    """The consume task of a FastStream `BatchPullStreamSubscriber` (see the module doc)."""
    pull = subscriber.subscription
    nc = pull._nc
    subject: str = pull._nms
    reply: str = pull._deliver
    inbox = Inbox(pull._sub)
    loop = asyncio.get_running_loop()
    while subscriber.running:
        messages: list[Msg] = []
        inbox.leftovers(messages, size)
        if len(messages) < size:
            try:
                await nc.publish(subject, next_request(size - len(messages), timeout_s), reply)
            except (ConnectionClosedError, ConnectionDrainingError):
                return
            except Exception:
                # Reconnecting with a full buffer: wait, as an empty fetch would have.
                log.warning("pull request not sent", exc_info=True)
                await asyncio.sleep(timeout_s)
                continue
            ended = await inbox.collect(messages, size, loop.time() + timeout_s)
            if not messages and ended not in (None, REQUEST_TIMEOUT):
                # Answered at once with nothing (a conflict such as a leadership change, a
                # consumer being recreated): ask again after a pause, not in a tight loop.
                log.warning("pull request ended: %s", ended, extra={"consumer": spec.durable})
                await asyncio.sleep(timeout_s)
                continue
        if messages and subscriber.running:
            await handle_batch(spec, handle, messages)


def fast_pull(
    subscriber: Any, spec: ConsumerSpec, size: int, timeout_s: float, handle: Handle
) -> None:
    """Make the FastStream batch pull subscriber `subscriber` (bound to `spec`) hand its fetches
    of up to `size` messages, `timeout_s` windows, to `handle` with `_consume`.

    FastStream starts its consume loop as `self._consume_pull` once it has created the pull
    subscription (`_create_subscription`, at broker start; FastStream 0.7's
    `BatchPullStreamSubscriber`); this replaces that loop for this one subscriber. FastStream
    still owns the subscription (created with the service's inbox prefix, unsubscribed at stop)
    and documents it in the service's AsyncAPI.
    """
    if not hasattr(subscriber, "_consume_pull"):
        raise TypeError(f"{type(subscriber).__name__} is not a FastStream pull subscriber")

    async def consume_pull() -> None:
        await _consume(subscriber, spec, size, timeout_s, handle)

    subscriber._consume_pull = consume_pull
