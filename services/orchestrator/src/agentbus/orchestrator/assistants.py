"""The built-in graphs, entries of `builtin.json` (loaded like a user's `langgraph.json`):
uncompiled `StateGraph`s the orchestrator compiles with its checkpointer and store.

- `agent` (default): a supervisor that routes each question to three specialists, each its own
  subgraph with its own prompt and tools — delivery metrics, resource planner, insights (see
  supervisor.py) — and answers from their results with citations. Routing, model selection
  (with the task type), the specialists' steps, tool calls and tokens are events of the run.
- `echo`: one node that streams the user's message back; the instant model of the benchmarks.
- `steps`: `input.steps` nodes of `input.delay` seconds each with a checkpoint after each one;
  a diagnostic assistant for durability and cancellation.
Nodes receive the run's `RunContext` through LangGraph's runtime context; they never look at
which model is configured.
"""

from __future__ import annotations

import asyncio
import operator
from collections.abc import Callable
from typing import Annotated, Any, TypedDict

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.runtime import Runtime

from .context import RunContext

# The `agent` assistant lives in supervisor.py (supervisor + specialist subgraphs); these names
# stay importable from here.
from .supervisor import MAX_STEPS, SYSTEM, AgentState, agent, pause_if_asked

__all__ = ["BUILDERS", "MAX_STEPS", "SYSTEM", "AgentState", "agent", "echo_graph", "steps"]


class EchoState(TypedDict, total=False):
    messages: Annotated[list[dict[str, Any]], operator.add]


async def echo(state: EchoState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    ctx = runtime.context
    await ctx.node_start("echo")
    text = str((state.get("messages") or [{}])[-1].get("content", ""))
    sink = ctx.token_sink("echo")
    for word in text.split(" "):
        await sink(word + " ")
    await ctx.node_end("echo")
    return {"messages": [{"role": "assistant", "content": text}]}


echo_graph: StateGraph[Any, Any, Any, Any] = StateGraph(EchoState, context_schema=RunContext)
echo_graph.add_node("echo", echo)
echo_graph.add_edge(START, "echo")
echo_graph.add_edge("echo", END)


class StepsState(TypedDict, total=False):
    steps: int
    delay: float
    done: Annotated[list[int], operator.add]


async def step(state: StepsState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    ctx = runtime.context
    n = len(state.get("done") or [])
    await ctx.node_start("step")
    pause_if_asked(ctx)
    await asyncio.sleep(float(state.get("delay", 0.5)))
    await ctx.emit("custom", {"step": n + 1, "of": state.get("steps", 1)}, node="step")
    await ctx.node_end("step")
    return {"done": [n + 1]}


def more_steps(state: StepsState) -> str:
    return "step" if len(state.get("done") or []) < int(state.get("steps", 1)) else END


steps: StateGraph[Any, Any, Any, Any] = StateGraph(StepsState, context_schema=RunContext)
steps.add_node("step", step)
steps.add_edge(START, "step")
steps.add_conditional_edges("step", more_steps)


def _compiler(
    graph: StateGraph[Any, Any, Any, Any],
) -> Callable[[BaseCheckpointSaver[Any]], CompiledStateGraph[Any, Any, Any, Any]]:
    return lambda checkpointer: graph.compile(checkpointer=checkpointer)


# The graphs compiled in-process with a given checkpointer (bench/run_overhead.py's baseline);
# the orchestrator itself loads them through builtin.json like any user's graph.
BUILDERS = {"agent": _compiler(agent), "echo": _compiler(echo_graph), "steps": _compiler(steps)}
