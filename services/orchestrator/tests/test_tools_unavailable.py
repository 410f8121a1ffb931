"""A specialist's tool whose service is not running: a real NATS with nothing subscribed answers
"no responders" at once, and the tool result is a fixed sentence naming what could not be
reached (no subject, no exception text), never an empty result that reads as "nobody"."""

from __future__ import annotations

from collections.abc import AsyncIterator

import nats
import pytest
from nats.aio.client import Client as NatsClient

from agentbus.orchestrator.tools import ToolBox


@pytest.fixture
async def box(nats_url: str) -> AsyncIterator[ToolBox]:
    nc: NatsClient = await nats.connect(nats_url)
    # A long timeout: the failure must come from "no responders" (its own sentence), not from
    # waiting the request out ("no answer within 600s").
    yield ToolBox(nc, timeout=600)
    await nc.close()


@pytest.mark.parametrize(
    ("tool", "arguments", "sentence"),
    [
        ("find_people_by_skill", {"skill": "Rust"}, "the graph could not be reached"),
        ("suggest_assignee", {"skill": "Rust"}, "the graph could not be reached"),
        ("query_metrics", {"metric": "dora"}, "analytics could not be reached"),
        ("lead_time", {}, "analytics could not be reached"),
        ("search_documents", {"query": "x"}, "document search could not be reached"),
    ],
)
async def test_a_tool_whose_service_is_down_fails_fast_with_a_fixed_sentence(
    box: ToolBox, tool: str, arguments: dict[str, str], sentence: str
) -> None:
    result = await box.call("tools-down", tool, arguments)
    assert result == {"error": f"{sentence}: no service is answering"}, result
