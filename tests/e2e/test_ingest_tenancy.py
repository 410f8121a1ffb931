"""Ingest trusts neither a job's tenant nor its declared size (issue 13, point 2).

An outside system's credentials are bound to `agentbus.v1.ingest.submit.<tenant>`; the worker
refuses a body whose tenant is not the subject's, an `object_name` outside `<tenant_id>/`, and a
declared size that is not the stored object's (measured before the bytes are read).
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator

import asyncpg
import httpx
import nats
import pytest
from nats.aio.client import Client as NatsClient
from nats.js.api import DeliverPolicy

from agentbus.contracts import DocumentIndexed, IngestFailed, IngestRequested
from agentbus.contracts import subjects as s
from agentbus.contracts.streams import DOCUMENTS
from agentbus.runtime.clients.ingest import follow, submit
from agentbus.runtime.platform import Platform

pytestmark = pytest.mark.e2e


@pytest.fixture
async def nc(platform: Platform) -> AsyncIterator[NatsClient]:
    client = await nats.connect(platform.engines.urls()["nats"])
    yield client
    await client.close()


async def outcome_of(nc: NatsClient, job: IngestRequested, subject: str) -> object:
    """Publish `job` on `subject` and wait for the document's outcome."""
    js = nc.jetstream()
    watch = await js.subscribe(
        s.ingest_progress(job.document_id),
        stream="INGEST_EVENTS",
        ordered_consumer=True,
        deliver_policy=DeliverPolicy.NEW,
    )
    try:
        await js.publish(subject, job.model_dump_json().encode(), headers={"Nats-Msg-Id": job.id})
        while True:
            msg = await watch.next_msg(timeout=60)
            if b'"reason"' in msg.data:
                return IngestFailed.model_validate_json(msg.data)
            if b'"chunks"' in msg.data:
                return DocumentIndexed.model_validate_json(msg.data)
    finally:
        await watch.unsubscribe()


def job_for(tenant: str, doc: str, object_name: str, data: bytes, size: int) -> IngestRequested:
    return IngestRequested(
        tenant_id=tenant,
        document_id=doc,
        object_name=object_name,
        filename=f"{doc}.txt",
        content_type="text/plain",
        size=size,
        sha256=hashlib.sha256(data).hexdigest(),
    )


async def documents_of(platform: Platform, tenant: str, doc: str) -> int:
    conn = await asyncpg.connect(platform.engines.urls()["postgres"])
    try:
        return int(
            await conn.fetchval(
                "SELECT count(*) FROM documents WHERE tenant_id = $1 AND document_id = $2",
                tenant,
                doc,
            )
        )
    finally:
        await conn.close()


async def test_a_job_cannot_index_another_tenants_object(
    nc: NatsClient, platform: Platform
) -> None:
    secret = b"Acme's merger plan: close the Lisbon office in March."
    theirs = await submit(nc, "sec-acme", secret, filename="plan.txt", source="plan.txt")
    async for _ in follow(nc, theirs.document_id, sha256=theirs.sha256, timeout=120):
        pass
    name = f"sec-acme/{theirs.document_id}/{theirs.sha256}"
    job = job_for("sec-mine", "stolen1", name, secret, len(secret))
    failed = await outcome_of(nc, job, s.ingest_submit("sec-mine"))
    assert isinstance(failed, IngestFailed), failed
    assert failed.stage == "validate" and "sec-mine/" in failed.reason, failed
    assert await documents_of(platform, "sec-mine", "stolen1") == 0


async def test_a_body_whose_tenant_is_not_the_subjects_is_rejected_and_counted(
    nc: NatsClient, platform: Platform
) -> None:
    data = b"A note from sec-other."
    name = "sec-other/spoof1/x"
    await (await nc.jetstream().object_store(DOCUMENTS.name)).put(name, data)
    # Published on sec-mine's subject, claiming to be sec-other's: never trusted.
    spoof = job_for("sec-other", "spoof1", name, data, len(data))
    await nc.jetstream().publish(
        s.ingest_submit("sec-mine"), spoof.model_dump_json().encode(), headers={"Nats-Msg-Id": "x1"}
    )
    # The worker goes on: a well-formed job after it is indexed.
    good = job_for("sec-mine", "after1", "sec-mine/after1/x", b"fine", 4)
    await (await nc.jetstream().object_store(DOCUMENTS.name)).put("sec-mine/after1/x", b"fine")
    assert isinstance(await outcome_of(nc, good, s.ingest_submit("sec-mine")), DocumentIndexed)
    assert await documents_of(platform, "sec-other", "spoof1") == 0
    async with httpx.AsyncClient() as http:
        metrics = (await http.get(f"http://127.0.0.1:{platform.ops_ports['ingest']}/metrics")).text
    assert (
        'agentbus_rejected_messages_total{reason="tenant_mismatch",service="ingest",'
        'subject="agentbus.v1.ingest.submit.sec-mine"} 1.0'
    ) in metrics


async def test_the_real_size_is_measured_before_the_bytes_are_read(
    nc: NatsClient, platform: Platform
) -> None:
    data = b"The declared size of this object is a lie. " * 50
    name = "sec-mine/liar1/x"
    await (await nc.jetstream().object_store(DOCUMENTS.name)).put(name, data)
    job = job_for("sec-mine", "liar1", name, data, 10)
    failed = await outcome_of(nc, job, s.ingest_submit("sec-mine"))
    assert isinstance(failed, IngestFailed), failed
    assert failed.stage == "validate" and f"{len(data)} bytes" in failed.reason, failed
    assert await documents_of(platform, "sec-mine", "liar1") == 0
