"""LangGraph node spans: each node's work is its child, also for nodes running in parallel."""

from __future__ import annotations

import asyncio
import operator
from collections.abc import Iterator
from typing import Annotated, Any, TypedDict, cast

import pytest
from langgraph.graph import START, StateGraph
from langgraph.runtime import Runtime
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from agentbus.contracts import RunRequested
from agentbus.orchestrator.context import RunContext
from agentbus.orchestrator.tools import ToolBox
from agentbus.runtime.testing import memory_spans
from agentbus.runtime.traces import tracer


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    yield memory_spans()


class State(TypedDict, total=False):
    done: Annotated[list[str], operator.add]


def node(name: str, fail: bool = False) -> Any:
    async def run(state: State, runtime: Runtime[RunContext]) -> dict[str, Any]:
        ctx = runtime.context
        await ctx.node_start(name)
        with tracer().start_as_current_span(f"work {name}"):
            await asyncio.sleep(0.02)  # the two branches overlap
        if fail:
            raise RuntimeError("node failed")
        await ctx.node_end(name)
        return {"done": [name]}

    return run


def context(published: list[str]) -> RunContext:
    async def publish(subject: str, data: bytes, headers: dict[str, str]) -> None:
        published.append(subject)

    run = RunRequested(tenant_id="t1", run_id="r1", thread_id="th1")
    return RunContext(run=run, publish=publish, router=None, tools=ToolBox(cast(Any, None)))


def by_id(exporter: InMemorySpanExporter) -> dict[int, ReadableSpan]:
    out = {}
    for span in exporter.get_finished_spans():
        ctx = span.get_span_context()
        assert ctx is not None
        out[ctx.span_id] = span
    return out


async def test_parallel_nodes_each_parent_their_own_work(spans: InMemorySpanExporter) -> None:
    graph = StateGraph(State, context_schema=RunContext)
    graph.add_node("left", node("left"))
    graph.add_node("right", node("right"))
    graph.add_edge(START, "left")
    graph.add_edge(START, "right")
    published: list[str] = []
    ctx = context(published)
    with tracer().start_as_current_span("run"):
        result = await graph.compile().ainvoke({}, context=ctx)
    ctx.end_spans()
    assert sorted(result["done"]) == ["left", "right"]
    found = by_id(spans)
    named = {s.name: s for s in found.values()}
    for side in ("left", "right"):
        work, owner = named[f"work {side}"], named[f"node {side}"]
        assert work.parent is not None and found[work.parent.span_id] is owner
        assert owner.parent is not None and found[owner.parent.span_id].name == "run"
        assert owner.attributes is not None and owner.attributes["langgraph.node"] == side
        assert owner.attributes.get("langgraph.node.completed") is None
    # Outside the nodes, nothing of theirs is current any more.
    assert not trace.get_current_span().get_span_context().is_valid
    assert published.count("agentbus.v1.runs.events.r1") == 4  # node_start/end of each


async def test_a_failing_node_leaves_no_open_span(spans: InMemorySpanExporter) -> None:
    graph = StateGraph(State, context_schema=RunContext)
    graph.add_node("broken", node("broken", fail=True))
    graph.add_edge(START, "broken")
    ctx = context([])
    with pytest.raises(RuntimeError, match="node failed"):
        await graph.compile().ainvoke({}, context=ctx)
    ctx.end_spans()  # what the runner does when a run ends, however it ends
    broken = {s.name: s for s in spans.get_finished_spans()}["node broken"]
    assert broken.attributes is not None
    assert broken.attributes["langgraph.node.completed"] is False
