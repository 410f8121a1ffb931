"""A native graph with one node that asks the `fast` group: the model layer inside a real run
(cache, usage, events, spans) without the supervisor's tools and the services they call."""

from __future__ import annotations

import operator
from typing import Annotated, Any, TypedDict

from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime

from agentbus.orchestrator.context import RunContext
from agentbus.orchestrator.model_calls import complete


class AskState(TypedDict, total=False):
    messages: Annotated[list[dict[str, Any]], operator.add]


async def ask(state: AskState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    ctx = runtime.context
    await ctx.node_start("ask")
    question = str((state.get("messages") or [{}])[-1].get("content", ""))
    call = await complete(
        ctx.router, "fast", [{"role": "user", "content": question}], on_token=ctx.token_sink("ask")
    )
    await ctx.model_used("ask", call)
    await ctx.node_end("ask")
    return {"messages": [{"role": "assistant", "content": call.content}]}


graph: StateGraph[Any, Any, Any, Any] = StateGraph(AskState, context_schema=RunContext)
graph.add_node("ask", ask)
graph.add_edge(START, "ask")
graph.add_edge("ask", END)
