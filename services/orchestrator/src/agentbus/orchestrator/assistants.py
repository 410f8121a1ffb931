"""The built-in graphs, entries of `builtin.json` (loaded like a user's `langgraph.json`):
uncompiled `StateGraph`s the orchestrator compiles with its checkpointer and store.

- `agent` (default): a supervisor that routes each question to specialists through tool calls —
  documents (search), graph (people, skills, ownership), analytics (metrics) — and loops
  (planner/executor) until the model answers without a tool or the step budget is spent.
  Routing, tool calls and tokens are all events of the run.
- `echo`: one node that streams the user's message back; the instant model of the benchmarks.
- `steps`: `input.steps` nodes of `input.delay` seconds each with a checkpoint after each one;
  a diagnostic assistant for durability and cancellation.
Nodes receive the run's `RunContext` through LangGraph's runtime context; they never look at
which model is configured.
"""

from __future__ import annotations

import asyncio
import json
import operator
import time
from collections.abc import Callable
from typing import Annotated, Any, TypedDict

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.runtime import Runtime
from langgraph.types import interrupt

from .context import RunContext
from .models import complete
from .tools import BY_NAME, TOOLS, cited, number_passages, passages, preview

MAX_STEPS = 3

SYSTEM = (
    "You are Agentbus, an assistant for an engineering organisation. Use the tools to find "
    "facts in documents, the people graph and metrics; answer only from what they return, in "
    "whole sentences. Cite each document passage you use by its ref in square brackets, e.g. "
    "[1]; if the results do not answer the question, say so."
)


class AgentState(TypedDict, total=False):
    messages: Annotated[list[dict[str, Any]], operator.add]
    # The sources the last answer cites (replaced each turn, not accumulated over the thread).
    citations: list[dict[str, Any]]
    steps: int


def pause_if_asked(ctx: RunContext) -> Any:
    """Human in the loop. After a RunControl `interrupt`, pause at this node with LangGraph's
    `interrupt()`: the run ends `interrupted`. A later run on the thread with a `command`
    ({"resume": value}) re-enters the node, and the same call returns the value once."""
    if ctx.resume_pending:
        ctx.resume_pending = False
        return interrupt({"question": "How should I continue?"})
    if ctx.interrupt_reason is None:
        return None
    return interrupt({"reason": ctx.interrupt_reason, "question": "How should I continue?"})


async def supervisor(state: AgentState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    ctx = runtime.context
    await ctx.node_start("supervisor")
    guidance = pause_if_asked(ctx)
    if guidance:
        state = {
            **state,
            "messages": [*state.get("messages", []), {"role": "user", "content": str(guidance)}],
        }
    steps = state.get("steps", 0)
    messages = [{"role": "system", "content": SYSTEM}, *state.get("messages", [])]
    can_use_tools = steps < MAX_STEPS
    call = await complete(
        ctx.router,
        "fast",
        messages,
        tools=[t.schema() for t in TOOLS] if can_use_tools else None,
        on_token=ctx.token_sink("supervisor"),
    )
    await ctx.model_used("supervisor", call)
    update: dict[str, Any] = {"steps": steps + 1}
    if call.tool_calls:
        chosen = [tc["function"]["name"] for tc in call.tool_calls]
        await ctx.emit(
            "routing",
            {
                "specialists": sorted({BY_NAME[n].specialist for n in chosen if n in BY_NAME}),
                "tools": chosen,
                "step": steps + 1,
            },
            node="supervisor",
        )
        update["messages"] = [
            {"role": "assistant", "content": call.content or None, "tool_calls": call.tool_calls}
        ]
    else:
        await ctx.emit(
            "routing", {"specialists": [], "answer": True, "step": steps + 1}, node="supervisor"
        )
        update["messages"] = [{"role": "assistant", "content": call.content}]
        # Only the passages the answer cites are its sources, each once.
        cites = cited(call.content or "", passages(state.get("messages", [])))
        update["citations"] = cites
        if cites:
            await ctx.emit("citations", {"citations": cites}, node="supervisor")
    await ctx.node_end("supervisor")
    return update


def after_supervisor(state: AgentState) -> str:
    last = (state.get("messages") or [{}])[-1]
    return "tools" if last.get("tool_calls") else END


async def run_tools(state: AgentState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    ctx = runtime.context
    await ctx.node_start("tools")
    last = state["messages"][-1]
    results: list[dict[str, Any]] = []
    offered = passages(state["messages"])  # numbered earlier in this turn
    for tc in last.get("tool_calls") or []:
        name = tc["function"]["name"]
        try:
            arguments = json.loads(tc["function"]["arguments"] or "{}")
        except ValueError:
            arguments = {}
        specialist = BY_NAME[name].specialist if name in BY_NAME else "unknown"
        await ctx.emit(
            "tool_start",
            {"tool": name, "specialist": specialist, "arguments": arguments},
            node="tools",
        )
        started = time.perf_counter()
        result = await ctx.tools.call(ctx.tenant_id, name, arguments)
        number_passages(result, offered)
        offered += [h for h in result.get("hits") or [] if isinstance(h, dict)]
        took = (time.perf_counter() - started) * 1e3
        error = result.get("error") if isinstance(result.get("error"), str) else None
        await ctx.tool_used(name, took, error)
        await ctx.emit(
            "tool_end",
            {
                "tool": name,
                "specialist": specialist,
                "ok": error is None,
                "result_preview": preview(result),
                "duration_ms": round(took, 2),
            },
            node="tools",
        )
        results.append(
            {
                "role": "tool",
                "tool_call_id": tc.get("id") or name,
                "name": name,
                "content": json.dumps(result, default=str),
            }
        )
    await ctx.node_end("tools")
    return {"messages": results}


agent: StateGraph[Any, Any, Any, Any] = StateGraph(AgentState, context_schema=RunContext)
agent.add_node("supervisor", supervisor)
agent.add_node("tools", run_tools)
agent.add_edge(START, "supervisor")
agent.add_conditional_edges("supervisor", after_supervisor)
agent.add_edge("tools", "supervisor")


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
