"""Malformed bodies on every bus subject a service consumes (issue 13, "Fuzzing, in the suite").

Taken from the contracts' catalog, so a new subject is fuzzed without touching this file:
request subjects must answer each bad body with an ErrorReply and a reason code; stream subjects
(the services' durable consumers) must reject and count it, whatever headers it carries, and
bodies that are well formed but claim another tenant or an unknown schema version too. Either way
the reject is counted in `agentbus_rejected_messages_total` of that service, every service still
answers its health request afterwards, and well-formed messages sent after the junk (with junk
headers) are processed promptly: a domain event is stored and a run ends `success`.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from collections.abc import AsyncIterator

import httpx
import nats
import pytest
from nats.aio.client import Client as NatsClient

from agentbus.contracts import (
    AnalyticsQuery,
    AnalyticsResult,
    DomainEvent,
    ErrorReply,
    RunEvent,
    RunRequested,
    ServiceHealth,
)
from agentbus.contracts import subjects as s
from agentbus.contracts.catalog import SUBJECTS, SubjectSpec
from agentbus.contracts.streams import CONSUMERS
from agentbus.runtime.platform import Platform

# Not JSON, JSON of the wrong kind, wrong types, and one large field (under NATS' 1 MB payload).
BAD_BODIES = [
    b"\xff\xfe not json {",
    b"[1, 2, 3]",
    b'{"tenant_id": 5, "run_id": [], "document_id": {}}',
    b'{"tenant_id": "fuzz", "query": "' + b"A" * 300_000 + b'"}',
]
# Well formed, but for another tenant than the fuzz subjects name, or of a schema version no
# contract has: only the stream test sends these (as a request some could be valid).
_OTHER_TENANT = DomainEvent(tenant_id="someone-else", source="fuzzer", type="junk")
_FUTURE_VERSION = {**json.loads(_OTHER_TENANT.model_dump_json()), "tenant_id": "fuzz"}
_FUTURE_VERSION["specversion"] = "2.0"
STREAM_BODIES = [
    *BAD_BODIES,
    _OTHER_TENANT.model_dump_json().encode(),
    json.dumps(_FUTURE_VERSION).encode(),
]
# Headers no service expects: broken trace context, a large value, an unknown content type. The
# tracing middleware reads these on every message.
JUNK_HEADERS = {
    "traceparent": "00-not-a-trace-zz",
    "tracestate": "=,=,=" * 50,
    "baggage": "%%%;;;=",
    "content-type": "application/x-junk",
    "x-fuzz": "h" * 16_000,
}
_REJECTED = re.compile(
    r"^agentbus_rejected_messages_total\{(?P<labels>[^}]*)\} (?P<value>[0-9.e+]+)$", re.M
)


@pytest.fixture
async def nc(platform: Platform) -> AsyncIterator[NatsClient]:
    client = await nats.connect(platform.engines.urls()["nats"])
    yield client
    await client.close()


def concrete(subject: str) -> str:
    """A subject a message can be published on: wildcards become a fuzz tenant's tokens."""
    return subject.replace(".*", ".fuzz").replace(".>", ".fuzz.fuzzer.junk")


async def rejected(platform: Platform, service: str, subject: str) -> float:
    """The service's count of rejected messages on `subject`, all reasons."""
    async with httpx.AsyncClient(timeout=10) as http:
        text = (await http.get(f"http://127.0.0.1:{platform.ops_ports[service]}/metrics")).text
    total = 0.0
    for m in _REJECTED.finditer(text):
        labels = dict(re.findall(r'(\w+)="([^"]*)"', m["labels"]))
        if labels.get("service") == service and labels.get("subject") == subject:
            total += float(m["value"])
    return total


REQUESTS = [
    spec
    for spec in SUBJECTS
    if spec.kind == "request"
    and spec.consumers
    and not spec.subject.startswith(s.PREFIX + ".health")
]
# Each stream subject of the catalog, for every service that reads its stream through a durable
# consumer, and each durable's whole filter (a subject no contract names is rejected too). The
# gateway's per-run and per-document streams are ordered consumers that follow one id and never
# see a fuzz subject.
_DURABLE = {(c.service, c.stream) for c in CONSUMERS}
STREAM_TARGETS = sorted(
    {
        (service, concrete(spec.subject))
        for spec in SUBJECTS
        if spec.kind == "stream"
        for service in spec.consumers
        if (service, spec.stream) in _DURABLE
    }
    | {(c.service, concrete(c.filter_subject)) for c in CONSUMERS}
)


@pytest.mark.parametrize("spec", REQUESTS, ids=[spec.subject for spec in REQUESTS])
async def test_bad_requests_get_an_error_reply_and_are_counted(
    spec: SubjectSpec, platform: Platform, nc: NatsClient
) -> None:
    subject, service = spec.subject, spec.consumers[0]
    before = await rejected(platform, service, subject)
    for body in BAD_BODIES:
        reply = await nc.request(subject, body, timeout=15)
        error = ErrorReply.model_validate_json(reply.data)
        assert error.reason and len(error.error) < 2000, (subject, body[:40], error)
    assert await rejected(platform, service, subject) >= before + len(BAD_BODIES)


async def test_bad_stream_messages_are_rejected_counted_and_services_keep_answering(
    platform: Platform, nc: NatsClient
) -> None:
    js = nc.jetstream()
    before = {t: await rejected(platform, *t) for t in STREAM_TARGETS}
    for _, subject in sorted({(None, subj) for _, subj in STREAM_TARGETS}):
        for body in STREAM_BODIES:
            await js.publish(subject, body, headers=JUNK_HEADERS)
    # Well-formed messages right after the junk, with the same junk headers.
    tenant = f"fuzz{uuid.uuid4().hex[:8]}"
    event = DomainEvent(tenant_id=tenant, source="ci", type="deployment", data={"service": "api"})
    await js.publish(
        s.domain_event(tenant, "ci", "deployment"),
        event.model_dump_json().encode(),
        headers=JUNK_HEADERS,
    )
    run = RunRequested(
        tenant_id=tenant,
        run_id=uuid.uuid4().hex,
        thread_id=uuid.uuid4().hex,
        assistant_id="echo",
        input={"messages": [{"role": "user", "content": "still there?"}]},
    )
    await js.publish(
        s.RUNS_SUBMIT,
        run.model_dump_json().encode(),
        headers={**JUNK_HEADERS, "Nats-Msg-Id": run.run_id},
    )
    # Every delivery is handled at once; 30 s is far past the batch consumers' 1 s window and
    # is their ack wait, after which a dropped message would only come back.
    deadline = time.monotonic() + 30
    missing = dict(before)
    while missing and time.monotonic() < deadline:
        for target, was in list(missing.items()):
            if await rejected(platform, *target) >= was + len(STREAM_BODIES):
                del missing[target]
        if missing:
            await asyncio.sleep(0.3)
    assert not missing, f"not rejected and counted: {sorted(missing)}"
    for service in ("gateway", *platform.ops_ports):
        reply = await nc.request(s.health(service), b"", timeout=15)
        assert ServiceHealth.model_validate_json(reply.data).service == service
    assert await run_status(nc, run.run_id) == "success"
    assert await deployments_stored(nc, tenant) == 1


async def run_status(nc: NatsClient, run_id: str) -> str | None:
    sub = await nc.jetstream().subscribe(s.run_events(run_id), ordered_consumer=True)
    try:
        while True:
            event = RunEvent.model_validate_json((await sub.next_msg(timeout=30)).data)
            if event.type == "end":
                return event.status
    finally:
        await sub.unsubscribe()


async def deployments_stored(nc: NatsClient, tenant: str) -> int:
    """The tenant's deployments in analytics, once there are any (or after 30 s)."""
    query = AnalyticsQuery(tenant_id=tenant, name="dora", params={"since_hours": 1})
    deadline = time.monotonic() + 30
    while True:
        reply = await nc.request(s.ANALYTICS_QUERY, query.model_dump_json().encode(), timeout=15)
        result = AnalyticsResult.model_validate_json(reply.data)
        rows = [dict(zip(result.columns, row, strict=True)) for row in result.rows]
        count = sum(int(r["deployments"] or 0) for r in rows if r["service"] == "api")
        if count or time.monotonic() > deadline:
            return count
        await asyncio.sleep(0.3)
