"""The chassis' request/reply wrapper and domain-event check, over the session's real NATS."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import nats
import pytest
from faststream.nats import NatsBroker
from prometheus_client import CollectorRegistry

from agentbus.contracts import DomainEvent, ErrorReply, RunControl
from agentbus.contracts.streams import INGEST_JOBS
from agentbus.runtime.consuming import Rejects, durable_subscriber, event_or_error
from agentbus.runtime.late import Late, NotStarted
from agentbus.runtime.replies import error_reply, replier


class Boom(RuntimeError):
    pass


@pytest.fixture
async def answering(nats_url: str) -> AsyncIterator[tuple[str, Rejects, nats.NATS]]:
    """A broker answering RunControl on a fresh subject: echoes it, fails on reason `boom`,
    and needs a late resource on reason `late` that is never set."""
    subject = f"agentbus.v1.test.replies.{uuid.uuid4().hex}"
    rejects = Rejects("test", CollectorRegistry())
    broker = NatsBroker(nats_url)
    never: Late[str] = Late("the never-started thing")

    @replier(
        broker,
        rejects,
        subject,
        RunControl,
        queue="test",
        title="test.replies",
        description="RunControl -> RunControl",
        on_error=error_reply("test_error", "control failed"),
    )
    async def echo(req: RunControl) -> RunControl:
        if req.reason == "boom":
            raise Boom("x" * 100)
        if req.reason == "late":
            return req.model_copy(update={"reason": never.value})
        return req.model_copy(update={"reason": f"seen {req.run_id}"})

    await broker.start()
    nc = await nats.connect(nats_url)
    try:
        yield subject, rejects, nc
    finally:
        await nc.close()
        await broker.stop()


async def ask(nc: nats.NATS, subject: str, body: bytes) -> bytes:
    return (await nc.request(subject, body, timeout=10)).data


def control(reason: str) -> bytes:
    return (
        RunControl(tenant_id="acme", run_id="r1", action="cancel", reason=reason)
        .model_dump_json()
        .encode()
    )


async def test_a_typed_handler_answers_its_reply(answering: tuple[str, Rejects, nats.NATS]) -> None:
    subject, _, nc = answering
    reply = RunControl.model_validate_json(await ask(nc, subject, control("hi")))
    assert reply.reason == "seen r1"


async def test_an_unreadable_request_is_an_error_reply_and_a_counted_reject(
    answering: tuple[str, Rejects, nats.NATS],
) -> None:
    subject, rejects, nc = answering
    bad = ErrorReply.model_validate_json(await ask(nc, subject, b"{not json"))
    assert bad.reason == "invalid_json"
    wrong = ErrorReply.model_validate_json(await ask(nc, subject, b'{"tenant_id": "acme"}'))
    assert wrong.reason == "schema" and "RunControl" in wrong.error
    assert rejects.value(subject, "invalid_json") == 1
    assert rejects.value(subject, "schema") == 1


async def test_a_failing_handler_answers_instead_of_timing_out(
    answering: tuple[str, Rejects, nats.NATS],
) -> None:
    subject, _, nc = answering
    failed = ErrorReply.model_validate_json(await ask(nc, subject, control("boom")))
    assert failed.reason == "test_error"
    # The fixed sentence: the exception's words go to the log, not to the requester.
    assert failed.error == "control failed"
    late = ErrorReply.model_validate_json(await ask(nc, subject, control("late")))
    assert late.reason == "test_error" and late.error == "control failed"


def test_late_holds_its_value_once_set() -> None:
    pool: Late[list[int]] = Late("the pool")
    assert pool.get() is None
    with pytest.raises(NotStarted, match="the pool is not ready"):
        _ = pool.value
    made = pool.set([1])
    assert pool.value is made and pool.get() is made


@pytest.mark.parametrize(
    ("subject", "why"),
    [
        ("agentbus.v1.events.acme.git.deployment", None),
        ("agentbus.v1.events.other.git.deployment", "subject_mismatch"),
        ("agentbus.v1.events.acme.jira.deployment", "subject_mismatch"),
        ("agentbus.v1.events.acme.git", "subject_mismatch"),
    ],
)
def test_a_domain_event_must_agree_with_its_subject(subject: str, why: str | None) -> None:
    rejects = Rejects("test", CollectorRegistry())
    body = DomainEvent(tenant_id="acme", source="git", type="deployment").model_dump_json()
    got = event_or_error(body.encode(), subject, rejects)
    if why is None:
        assert isinstance(got, DomainEvent) and got.tenant_id == "acme"
    else:
        assert isinstance(got, ErrorReply) and got.reason == why
    assert rejects.value(subject, "subject_mismatch") == (0 if why is None else 1)


def test_a_service_binds_only_its_own_consumers() -> None:
    with pytest.raises(ValueError, match="belongs to ingest"):
        durable_subscriber(NatsBroker(), "analytics", INGEST_JOBS, title="x")
