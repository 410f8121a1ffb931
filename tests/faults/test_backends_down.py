"""A backend down, with the agent saying so (issue 21): stop the Bolt graph server and ask a
people question, stop the analytics service (it owns chDB) and ask a DORA question. The run
ends within its bound, the tool step fails with a fixed sentence naming what is unavailable (no
exception text, no address), and the answer says the graph or analytics could not be reached
instead of inventing people or numbers. Once the backend is back, the same question is answered,
and what arrived meanwhile is caught up with nothing lost or doubled: a document submitted while
the graph was down is indexed with its graph facts (ingest NAKs with a delay and retries the
graph step), and domain events published while analytics was down are all counted once.

The module has its own platform (the session one is never stopped underneath other tests), with
the sample organisation loaded into one tenant by the specialists' own fixture.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import nats
import pytest
from nats.aio.client import Client as NatsClient

from agentbus.contracts import (
    AnalyticsQuery,
    AnalyticsResult,
    DocumentIndexed,
    DomainEvent,
    RunEvent,
)
from agentbus.contracts import subjects as s
from agentbus.runtime.clients.ingest import IngestEvent, follow
from agentbus.runtime.clients.ingest import submit as submit_document
from agentbus.runtime.engines import free_port
from agentbus.runtime.platform import Platform

from ..e2e.test_agents import events, submit
from ..e2e.test_specialists import sample  # noqa: F401  (the fixture, on this module's platform)

pytestmark = pytest.mark.e2e

# What a fixed sentence must not carry: an exception's type or an address.
LEAK = re.compile(r"Error\b|Exception|Traceback|\d+\.\d+\.\d+\.\d+|localhost|:\d{2,5}\b|bolt://")
# A run with a backend down must still end well inside this (the tools fail fast).
RUN_BOUND_S = 90.0


@pytest.fixture(scope="module")
def platform(session_root: Path) -> Iterator[Platform]:
    """This module's own platform: its graph server and analytics service are stopped here."""
    root = session_root / "backends-down"
    plat = Platform(root / "var", gateway_port=free_port())
    plat.start(timeout=240)
    try:
        yield plat
    finally:
        plat.stop()


@pytest.fixture
async def nc(platform: Platform) -> AsyncIterator[NatsClient]:
    client = await nats.connect(platform.engines.urls()["nats"])
    yield client
    await client.close()


async def ask(nc: NatsClient, tenant: str, question: str) -> tuple[list[RunEvent], float]:
    started = time.monotonic()
    run = await submit(
        nc,
        tenant_id=tenant,
        assistant_id="agent",
        input={"messages": [{"role": "user", "content": question}]},
    )
    seen = [e async for e in events(nc, run.run_id, timeout=RUN_BOUND_S)]
    took = time.monotonic() - started
    assert seen[-1].type == "end" and seen[-1].status == "success", seen[-1]
    return seen, took


def tool_ends(seen: list[RunEvent]) -> list[dict[str, Any]]:
    return [e.data for e in seen if e.type == "tool_end"]


def answer(seen: list[RunEvent]) -> str:
    return str(seen[-1].data.get("answer") or "")


# Names the entity extractor picks up, so the document has graph facts to write.
NOTE = (
    b"# Payments on-call\n\nIngrid Solberg owns the Payments Gateway. Marcus Webb runs the "
    b"Ledger Service with Ingrid Solberg. The Payments Gateway calls the Ledger Service."
)


async def outcome(nc: NatsClient, document_id: str, sha256: str) -> list[IngestEvent]:
    return [e async for e in follow(nc, document_id, sha256=sha256, timeout=240)]


async def deployments_of(nc: NatsClient, tenant: str, service: str) -> int:
    query = AnalyticsQuery(tenant_id=tenant, name="dora", params={"since_hours": 2})
    reply = await nc.request(s.ANALYTICS_QUERY, query.model_dump_json().encode(), timeout=30)
    result = AnalyticsResult.model_validate_json(reply.data)
    assert result.error is None, result.error
    rows = [dict(zip(result.columns, row, strict=True)) for row in result.rows]
    return sum(int(r["deployments"] or 0) for r in rows if r["service"] == service)


async def test_graph_down_people_question_says_the_graph_could_not_be_reached(
    platform: Platform,
    nc: NatsClient,
    sample: dict[str, Any],  # noqa: F811
) -> None:
    tenant = sample["tenant"]
    graph = platform.engines.graph
    assert platform.supervisor is not None
    platform.supervisor.pause("graph")  # a deliberate stop: not restarted behind our back
    graph.stop()
    try:
        # A document arrives while the graph is down: ingest must not lose it.
        sub = await submit_document(nc, tenant, NOTE, filename="payments-oncall.md")
        indexing = asyncio.create_task(outcome(nc, sub.document_id, sub.sha256))
        seen, took = await ask(nc, tenant, "who knows Rust?")
        ends = tool_ends(seen)
        print(f"\ngraph down: run ended in {took:.1f}s; tool steps {ends}")
        print(f"answer: {answer(seen)}")
        assert ends and all(not e["ok"] for e in ends), ends
        failed = [e for e in ends if e["specialist"] == "resource_planner"]
        assert failed, ends
        for end in failed:
            error = str(end.get("error") or end["result_preview"])
            assert "the graph could not be reached" in error, end
            assert not LEAK.search(error), error
        text = answer(seen)
        assert "the graph could not be reached" in text, text
        assert "Priya Nair" not in text and "Tomas Ortega" not in text, text
        assert not LEAK.search(text), text
    finally:
        graph.restart(timeout=60)
        platform.supervisor.resume("graph")
    seen, took = await ask(nc, tenant, "who knows Rust?")
    print(f"graph back: answered in {took:.1f}s: {answer(seen)}")
    assert all(e["ok"] for e in tool_ends(seen)), tool_ends(seen)
    assert "Priya Nair" in answer(seen) and "could not be reached" not in answer(seen)
    progress = await indexing
    done = progress[-1]
    print(f"document sent while the graph was down: {done!r}")
    assert isinstance(done, DocumentIndexed) and done.entities > 0, done


async def test_analytics_down_dora_question_says_analytics_could_not_be_reached(
    platform: Platform,
    nc: NatsClient,
    sample: dict[str, Any],  # noqa: F811
) -> None:
    tenant = sample["tenant"]
    platform.stop_service("analytics")
    try:
        # Domain events arrive while analytics is down: all must be counted once it is back.
        js = nc.jetstream()
        for i in range(40):
            event = DomainEvent(
                id=f"catchup-{tenant}-{i}",
                tenant_id=tenant,
                source="ci",
                type="deployment",
                data={"service": "catchup"},
            )
            await js.publish(
                s.domain_event(tenant, "ci", "deployment"),
                event.model_dump_json().encode(),
                headers={"Nats-Msg-Id": event.id},
            )
        seen, took = await ask(nc, tenant, "what is our deployment frequency?")
        ends = tool_ends(seen)
        print(f"\nanalytics down: run ended in {took:.1f}s; tool steps {ends}")
        print(f"answer: {answer(seen)}")
        assert ends and all(not e["ok"] for e in ends), ends
        assert {e["specialist"] for e in ends} == {"delivery_metrics"}, ends
        for end in ends:
            error = str(end.get("error") or end["result_preview"])
            assert "analytics could not be reached" in error, end
            assert not LEAK.search(error), error
        text = answer(seen)
        assert "analytics could not be reached" in text, text
        assert not LEAK.search(text), text
    finally:
        platform.start_service("analytics")
        await asyncio.to_thread(platform.wait_ready, 120)
    seen, took = await ask(nc, tenant, "what is our deployment frequency?")
    print(f"analytics back: answered in {took:.1f}s: {answer(seen)}")
    assert all(e["ok"] for e in tool_ends(seen)), tool_ends(seen)
    assert "could not be reached" not in answer(seen), answer(seen)
    deadline = time.monotonic() + 60
    while (counted := await deployments_of(nc, tenant, "catchup")) < 40:
        assert time.monotonic() < deadline, f"{counted} of the 40 events sent meanwhile"
        await asyncio.sleep(0.5)
    await asyncio.sleep(2)  # a redelivered copy would show up as more
    assert await deployments_of(nc, tenant, "catchup") == 40
