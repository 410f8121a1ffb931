"""What every JetStream consumer does the same way: decode-or-reject, heartbeats, redelivery.

A message that cannot be parsed into its contract is rejected with a logged reason and a count
in `agentbus_rejected_messages_total`; it is terminated (not redelivered: it would fail the same
way) and JetStream's MSG_TERMINATED advisory lands in the DEAD_LETTERS stream as its record.

`durable_subscriber` is the one way a service binds a durable pull consumer of the contracts:
stream, durable name, config and filter all come from its `ConsumerSpec`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from faststream import AckPolicy
from faststream.nats import JStream, NatsBroker, PullSub
from faststream.nats.message import NatsMessage
from prometheus_client import CollectorRegistry, Counter
from pydantic import BaseModel, ValidationError

from agentbus.contracts import DomainEvent, ErrorReply
from agentbus.contracts import subjects as s
from agentbus.contracts.streams import ConsumerSpec

from . import pull_fetch
from .broker import pull_inbox
from .provisioning import consumer_config
from .tasks import cancel_and_wait

log = logging.getLogger("agentbus.consumer")

M = TypeVar("M", bound=BaseModel)
# What `durable_subscriber` returns: FastStream's subscriber decorator.
Subscribe = Callable[[Callable[..., Any]], Any]


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

    def record(self, subject: str, reason: str, detail: str = "", **extra: str) -> None:
        """Log one rejected message with its reason and count it."""
        log.warning(
            "rejected message",
            extra={"subject": subject, "reason": reason, "detail": detail, **extra},
        )
        self.count(subject, reason)

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
    rejects.record(subject, kind, detail, contract=model.__name__)
    return ErrorReply(error=f"invalid {model.__name__}: {detail}", reason=kind)


def event_or_error(body: bytes, subject: str, rejects: Rejects) -> DomainEvent | ErrorReply:
    """A domain event whose body agrees with its subject, or an ErrorReply after the reject.

    The subject routes by tenant, and NATS permissions say who may publish on it; a body that
    claims another tenant (or source, or type) than its subject is never trusted.
    """
    event = parse_or_error(body, DomainEvent, rejects, subject)
    if isinstance(event, ErrorReply):
        return event
    try:
        tokens = s.parse_domain_event(subject)
    except s.SubjectError:
        tokens = ("", "", "")
    if tokens == (event.tenant_id, event.source, event.type):
        return event
    detail = f"body says {event.tenant_id}/{event.source}/{event.type}"
    rejects.record(subject, "subject_mismatch", detail)
    return ErrorReply(
        error=f"subject {subject} does not match its event: {detail}", reason="subject_mismatch"
    )


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
        await cancel_and_wait(task)


@dataclass(frozen=True)
class Fetch:
    """How a pull subscriber fetches: `size` messages per pull, waiting up to `timeout_s`;
    `batch` hands the handler the whole fetch at once instead of one message at a time."""

    size: int = 1
    timeout_s: float = 5.0
    batch: bool = False


ONE_AT_A_TIME = Fetch()


def durable_subscriber(
    broker: NatsBroker,
    service: str,
    spec: ConsumerSpec,
    *,
    title: str,
    description: str = "",
    fetch: Fetch = ONE_AT_A_TIME,
    decoder: Callable[..., Any] | None = None,
) -> Subscribe:
    """The subscriber decorator of the durable pull consumer `spec` (provisioned from the same
    spec at start-up, so never declared here). Handlers ack, nak or reject themselves."""
    if spec.service != service:
        raise ValueError(f"consumer {spec.durable} belongs to {spec.service}, not {service}")
    pull_fetch.install()
    options: dict[str, Any] = {} if decoder is None else {"decoder": decoder}
    subscriber: Subscribe = broker.subscriber(
        spec.filter_subject,
        stream=JStream(spec.stream, declare=False),
        durable=spec.durable,
        config=consumer_config(spec),
        pull_sub=PullSub(batch_size=fetch.size, timeout=fetch.timeout_s, batch=fetch.batch),
        ack_policy=AckPolicy.MANUAL,
        inbox_prefix=pull_inbox(service),
        title=title,
        description=description or spec.description,
        **options,
    )
    return subscriber
