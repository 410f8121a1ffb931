"""A backend down, with the agent saying so (issue 21): stop the Bolt graph server and ask a
people question, stop the analytics service (it owns chDB) and ask a DORA question. The run
ends within its bound, the tool step fails with a fixed sentence naming what is unavailable (no
exception text, no address), and the answer says the graph or analytics could not be reached
instead of inventing people or numbers. Once the backend is back, the same question is answered.

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

from agentbus.contracts import RunEvent
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


async def test_analytics_down_dora_question_says_analytics_could_not_be_reached(
    platform: Platform,
    nc: NatsClient,
    sample: dict[str, Any],  # noqa: F811
) -> None:
    tenant = sample["tenant"]
    platform.stop_service("analytics")
    try:
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
