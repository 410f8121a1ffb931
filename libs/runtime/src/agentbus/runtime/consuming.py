"""What every JetStream consumer does the same way: decode-or-reject, heartbeats, redelivery.

A message that cannot be parsed into its contract is rejected with a logged reason and a count
in `agentbus_rejected_messages_total`; it is terminated (not redelivered: it would fail the same
way) and JetStream's MSG_TERMINATED advisory lands in the DEAD_LETTERS stream as its record.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import TypeVar

from faststream.nats.message import NatsMessage
from prometheus_client import CollectorRegistry, Counter
from pydantic import BaseModel, ValidationError

from agentbus.contracts import ErrorReply
from agentbus.contracts.streams import ConsumerSpec

log = logging.getLogger("agentbus.consumer")

M = TypeVar("M", bound=BaseModel)


class Rejects:
    """Counts rejected messages by subject and reason for one service."""

    def __init__(self, service: str, registry: CollectorRegistry) -> None:
        self.service = service
        self.counter = Counter(
            "agentbus_rejected_messages",
            "Messages rejected because they do not match their contract",
            ["service", "subject", "reason"],
            registry=registry,
        )

    def count(self, subject: str, reason: str) -> None:
        self.counter.labels(self.service, subject, reason).inc()

    def value(self, subject: str, reason: str) -> float:
        return float(self.counter.labels(self.service, subject, reason)._value.get())


def describe(exc: ValidationError) -> tuple[str, str]:
    """(short reason code, one readable line) for a validation error."""
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "body"
    kind = "invalid_json" if first["type"] == "json_invalid" else "schema"
    return kind, f"{where}: {first['msg']}"


def parse_or_error(body: bytes, model: type[M], rejects: Rejects, subject: str) -> M | ErrorReply:
    """The body as `model`, or an ErrorReply after logging and counting the reject."""
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        kind, detail = describe(exc)
    log.warning(
        "rejected message",
        extra={"subject": subject, "reason": kind, "detail": detail, "contract": model.__name__},
    )
    rejects.count(subject, kind)
    return ErrorReply(error=f"invalid {model.__name__}: {detail}", reason=kind)


async def decode_or_reject(msg: NatsMessage, model: type[M], rejects: Rejects) -> M | None:
    """A stream message as `model`, or None after rejecting (terminating) it with a reason."""
    parsed = parse_or_error(msg.body, model, rejects, msg.raw_message.subject)
    if isinstance(parsed, ErrorReply):
        await msg.reject()
        return None
    return parsed


def delivery_count(msg: NatsMessage) -> int:
    """How many times JetStream has delivered this message (1 on the first try)."""
    try:
        return int(msg.raw_message.metadata.num_delivered)
    except Exception:
        return 1


def is_last_delivery(msg: NatsMessage, spec: ConsumerSpec) -> bool:
    return delivery_count(msg) >= spec.max_deliver


def nak_delay(msg: NatsMessage, spec: ConsumerSpec) -> float:
    delays = spec.nak_delays_s or (1.0,)
    return float(delays[min(delivery_count(msg) - 1, len(delays) - 1)])


@contextlib.asynccontextmanager
async def heartbeat(msg: NatsMessage, spec: ConsumerSpec) -> AsyncIterator[None]:
    """Tell JetStream the work is alive (in_progress) so a long job is not redelivered."""

    async def beat() -> None:
        while True:
            await asyncio.sleep(spec.ack_wait_s / 3)
            with contextlib.suppress(Exception):
                await msg.in_progress()

    task = asyncio.create_task(beat())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
