"""One request to a service behind the gateway (`upstream.request_reply`), over real NATS: the
typed reply, the caller's refusals, the service's failures and nobody answering."""

from __future__ import annotations

from collections.abc import AsyncIterator

import nats
import pytest
from fastapi import HTTPException
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from agentbus.contracts import ErrorReply, ThreadStateRequest, new_id
from agentbus.gateway.upstream import UpstreamError, request_reply

REQ = ThreadStateRequest(tenant_id="t1", thread_id="th-1")
Req = ThreadStateRequest


@pytest.fixture
async def nc(nats_url: str) -> AsyncIterator[NatsClient]:
    client = await nats.connect(nats_url)
    yield client
    await client.close()


async def answering(nc: NatsClient, body: bytes) -> str:
    subject = f"test.upstream.{new_id()}"

    async def respond(msg: Msg) -> None:
        await msg.respond(body)

    await nc.subscribe(subject, cb=respond)
    await nc.flush()
    return subject


async def test_the_typed_reply(nc: NatsClient) -> None:
    # Any contract makes a reply; the request's own model is the simplest one to build.
    subject = await answering(nc, REQ.model_dump_json().encode())
    assert await request_reply(nc, subject, REQ, Req, "Thread state") == REQ


async def test_a_refusal_is_the_callers_status_with_the_services_words(nc: NatsClient) -> None:
    refused = ErrorReply(error="no such thread", reason="not_found")
    subject = await answering(nc, refused.model_dump_json().encode())
    with pytest.raises(HTTPException) as caught:
        await request_reply(nc, subject, REQ, Req, "x", refusals={"not_found": 404})
    assert (caught.value.status_code, caught.value.detail) == (404, "no such thread")


async def test_any_other_error_is_the_failure_status_with_a_reason_code(nc: NatsClient) -> None:
    failed = ErrorReply(error="checkpointer: connection reset", reason="store_error")
    subject = await answering(nc, failed.model_dump_json().encode())
    with pytest.raises(UpstreamError) as caught:
        await request_reply(
            nc,
            subject,
            REQ,
            ThreadStateRequest,
            "Graph",
            refusals={"not_found": 404},
            failure_status=424,
        )
    assert caught.value.status_code == 424
    assert caught.value.detail == "Graph failed (store_error)"  # not the service's own text


async def test_nobody_answering_is_a_503_to_retry(nc: NatsClient) -> None:
    with pytest.raises(HTTPException) as caught:
        await request_reply(nc, f"test.upstream.{new_id()}", REQ, Req, "Thread state")
    assert caught.value.status_code == 503
    assert caught.value.headers == {"Retry-After": "1"}
