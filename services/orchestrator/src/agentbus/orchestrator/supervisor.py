"""The `agent` assistant: a supervisor that routes each question to three specialists, each its
own LangGraph subgraph with its own prompt and tools, and answers from what they found.

- `delivery_metrics`: DORA, cycle time, deployments, incidents, anomalies (with alerts on the
  bus), questions over the event data (text to a gated SQL query) — analytics.
- `resource_planner`: who knows what, who owns what, load and availability, 1:1 prep, who
  should take a piece of work — the people graph and activity events.
- `insights`: documents, graph-augmented answers, related topics, recent alerts, cross-source
  summaries — retrieval, the graph and analytics.

A turn: the question is classified (task_kind: lookup, analysis, planning, summary) which picks
the model group of the specialists and the answer; the supervisor's routing call (`fast`) is
offered one hand-off tool per specialist and the `routing` event names the specialists it chose
(several run in parallel). Each specialist's subgraph calls its model with its tools, runs them,
and may call again (at most `SPECIALIST_STEPS` rounds); its events carry the subgraph's
`namespace`, so a client sees the steps inside it. Back at the supervisor, the model answers from
the tool results with citations, or routes again (at most `MAX_STEPS` supervisor steps a turn).
A specialist's own closing text is not kept: the answer is composed once, from the results.
"""

from __future__ import annotations

import json
import operator
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any, TypedDict

from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.runtime import Runtime
from langgraph.types import interrupt

from .context import RunContext
from .model_calls import complete
from .specialist_tools import ALL_TOOLS
from .task_kind import Task, classify
from .tools import cited, number_passages, passages, preview

# Supervisor steps per turn (route, maybe route again, answer) and tool rounds per specialist.
MAX_STEPS = 3
SPECIALIST_STEPS = 2

SYSTEM = (
    "You are Agentbus, an assistant for an engineering organisation. Use the tools to find "
    "facts in documents, the people graph and metrics; answer only from what they return, in "
    "whole sentences. Cite each document passage you use by its ref in square brackets, e.g. "
    "[1]; if the results do not answer the question, say so."
)
ROUTING = (
    " Hand the question to the specialists whose tools can answer it (ask_* tools); when their "
    "results are in, answer."
)


@dataclass(frozen=True)
class Specialist:
    name: str
    title: str
    prompt: str
    tools: tuple[str, ...]
    # What the supervisor's hand-off tool says the specialist is for. Written by hand, short and
    # about intent: the concatenated descriptions of all its tools named commits, branches and
    # repositories, and sent 18 of the 50 documentation questions of bench/answer_quality to the
    # metrics and people specialists (2 of 56 with these).
    routing: str = ""

    @property
    def handoff(self) -> str:
        return f"ask_{self.name}"

    def handoff_schema(self) -> dict[str, Any]:
        """The supervisor's tool for this specialist: described by what its tools do. Only the
        insights specialist takes a free-text question: a question no description matches goes
        to the documents, as before the specialists."""
        described = self.routing or " ".join(ALL_TOOLS[t].description for t in self.tools)
        params: dict[str, Any] = {"type": "object", "properties": {}, "required": []}
        if self.name == "insights":
            params = {
                "type": "object",
                "properties": {"question": {"type": "string", "description": "The question"}},
                "required": ["question"],
            }
        return {
            "type": "function",
            "function": {
                "name": self.handoff,
                "description": described if self.routing else f"{self.title}. {described}",
                "parameters": params,
            },
        }


SPECIALISTS: tuple[Specialist, ...] = (
    Specialist(
        "delivery_metrics",
        "Delivery metrics specialist: DORA metrics, deployments, cycle time, incidents",
        "You are the delivery-metrics specialist. Use your tools to measure delivery: DORA "
        "metrics, deployments, lead and cycle time, incidents, anomalies, and counts over the "
        "event data. Report the numbers with their period; never guess a number.",
        (
            "query_metrics",
            "deployment_history",
            "lead_time",
            "incident_report",
            "detect_anomalies",
            "ask_event_data",
        ),
        routing="Delivery metrics and statistics: deployment frequency, lead time for changes, "
        "change failure rate, time to restore (DORA), cycle time, how many deployments or "
        "incidents, trends and anomalies in the numbers.",
    ),
    Specialist(
        "resource_planner",
        "Resource planner: who knows what, who owns what, workload and availability",
        "You are the resource planner. Use your tools to find who knows a skill, who owns or "
        "works on a repository, how loaded and available people are, and to prepare 1:1s and "
        "suggest who should take work. Name people and say what the evidence is.",
        (
            "find_people_by_skill",
            "find_owners",
            "person_skills",
            "person_work",
            "team_load",
            "availability",
            "one_on_one_prep",
            "suggest_assignee",
        ),
        routing="People and ownership: who knows a skill, programming language or technology "
        "(who knows Rust), who owns or maintains a repository or service, workload, who is "
        "available or free to take work, 1:1 preparation, who should take a task or bug.",
    ),
    Specialist(
        "insights",
        "Insights specialist: documents, runbooks and guides, how to do something, what to do "
        "when something goes wrong or fails; anomalies and summaries",
        "You are the insights specialist. Use your tools to find what the documents, runbooks "
        "and guides say, who is connected to what they describe, recent anomaly alerts and "
        "summaries across sources. Cite document passages by their ref.",
        (
            "search_documents",
            "graph_augmented_answer",
            "related_topics",
            "documents_about",
            "recent_alerts",
            "cross_source_summary",
        ),
        routing="Search the organisation's documents, runbooks, guides, policies and "
        "procedures: how to do something, what a process or rule says, how to roll back or "
        "restore when a release or deployment goes wrong; recent alerts, summaries.",
    ),
)
BY_HANDOFF = {s.handoff: s for s in SPECIALISTS}


class AgentState(TypedDict, total=False):
    messages: Annotated[list[dict[str, Any]], operator.add]
    # The sources the last answer cites (replaced each turn, not accumulated over the thread).
    citations: list[dict[str, Any]]
    steps: int
    # This turn: where its user message is (steps and task reset when it changes), the task's
    # classification and the specialists the supervisor's last step chose.
    turn: int
    task: dict[str, Any]
    route: list[str]


class SpecialistState(TypedDict, total=False):
    messages: Annotated[list[dict[str, Any]], operator.add]
    task: dict[str, Any]
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


def _last_user(messages: list[dict[str, Any]]) -> int:
    return max((i for i, m in enumerate(messages) if m.get("role") == "user"), default=-1)


def _task(state: AgentState | SpecialistState) -> Task:
    raw = state.get("task") or {}
    try:
        return Task(str(raw["type"]), str(raw["group"]), str(raw["reason"]))  # type: ignore[arg-type]
    except KeyError:
        return classify("")


def _details(task: Task, step: str, **more: Any) -> dict[str, Any]:
    return {
        "task": task.type,
        "task_group": task.group,
        "reason": task.reason,
        "step": step,
        **more,
    }


async def supervisor(state: AgentState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    ctx = runtime.context
    await ctx.node_start("supervisor")
    guidance = pause_if_asked(ctx)
    messages = list(state.get("messages", []))
    if guidance:
        messages.append({"role": "user", "content": str(guidance)})
    turn = _last_user(messages)
    same_turn = state.get("turn") == turn and bool(state.get("task"))
    steps = state.get("steps", 0) if same_turn else 0
    task = (
        _task(state) if same_turn else classify(str(messages[turn]["content"]) if turn >= 0 else "")
    )
    routing = steps == 0
    can_route = steps < MAX_STEPS - 1
    # Routing is a short choice: always the fast group. The answer uses the task's group.
    group = "fast" if routing else task.group
    why = "routing: choosing specialists is a lookup-sized step" if routing else task.reason
    system = SYSTEM + (ROUTING if can_route else "")
    call = await complete(
        ctx.router,
        group,
        [{"role": "system", "content": system}, *messages],
        tools=[s.handoff_schema() for s in SPECIALISTS] if can_route else None,
        on_token=ctx.token_sink("supervisor"),
    )
    await ctx.model_used(
        "supervisor", call, details={**_details(task, "route" if routing else "answer"), "why": why}
    )
    update: dict[str, Any] = {"steps": steps + 1, "turn": turn, "task": task.as_event()}
    chosen = [
        BY_HANDOFF[tc["function"]["name"]]
        for tc in call.tool_calls
        if tc["function"]["name"] in BY_HANDOFF
    ]
    names = list(dict.fromkeys(s.name for s in chosen))
    if names:
        await ctx.emit(
            "routing",
            {
                "specialists": names,
                "specialist": names[0],
                "tools": [s.handoff for s in chosen],
                "task": task.type,
                "step": steps + 1,
            },
            node="supervisor",
        )
        update["route"] = names
    else:
        await ctx.emit(
            "routing",
            {"specialists": [], "answer": True, "task": task.type, "step": steps + 1},
            node="supervisor",
        )
        update["route"] = []
        update["messages"] = [{"role": "assistant", "content": call.content}]
        # Only the passages the answer cites are its sources, each once.
        cites = cited(call.content or "", passages(messages))
        update["citations"] = cites
        if cites:
            await ctx.emit("citations", {"citations": cites}, node="supervisor")
    if guidance:
        update["messages"] = [messages[-1], *update.get("messages", [])]
    await ctx.node_end("supervisor")
    return update


def after_supervisor(state: AgentState) -> list[str] | str:
    return list(state.get("route") or []) or END


def _namespace(config: RunnableConfig, fallback: str) -> list[str]:
    """The subgraph's namespace as LangGraph streams it with `subgraphs=True` ('node:task')."""
    ns = str((config.get("configurable") or {}).get("checkpoint_ns") or "")
    parts = [p for p in ns.split("|") if p]
    return parts[:-1] or [fallback]


Node = Callable[..., Awaitable[dict[str, Any]]]


def _agent_node(spec: Specialist) -> Node:
    async def agent(
        state: SpecialistState, config: RunnableConfig, runtime: Runtime[RunContext]
    ) -> dict[str, Any]:
        ctx = runtime.context
        ns = _namespace(config, spec.name)
        steps = state.get("steps", 0)
        if steps >= SPECIALIST_STEPS:
            return {}
        await ctx.node_start("agent", namespace=ns)
        task = _task(state)
        call = await complete(
            ctx.router,
            task.group,
            [{"role": "system", "content": spec.prompt}, *state.get("messages", [])],
            tools=[ALL_TOOLS[t].schema() for t in spec.tools],
        )
        await ctx.model_used(
            "agent",
            call,
            details={**_details(task, "specialist"), "specialist": spec.name},
            namespace=ns,
        )
        update: dict[str, Any] = {"steps": steps + 1}
        if call.tool_calls:
            await ctx.emit(
                "routing",
                {
                    "specialist": spec.name,
                    "tools": [tc["function"]["name"] for tc in call.tool_calls],
                    "step": steps + 1,
                },
                node="agent",
                namespace=ns,
            )
            update["messages"] = [
                {
                    "role": "assistant",
                    "content": call.content or None,
                    "tool_calls": call.tool_calls,
                }
            ]
        else:
            update["steps"] = SPECIALIST_STEPS  # done: it answered instead of calling tools
        await ctx.node_end("agent", namespace=ns)
        return update

    return agent


def _tools_node(spec: Specialist) -> Node:
    async def tools(
        state: SpecialistState, config: RunnableConfig, runtime: Runtime[RunContext]
    ) -> dict[str, Any]:
        ctx = runtime.context
        ns = _namespace(config, spec.name)
        await ctx.node_start("tools", namespace=ns)
        last = state["messages"][-1]
        results: list[dict[str, Any]] = []
        offered = passages(state["messages"])  # numbered earlier in this turn
        for tc in last.get("tool_calls") or []:
            name = tc["function"]["name"]
            try:
                arguments = json.loads(tc["function"]["arguments"] or "{}")
            except ValueError:
                arguments = {}
            if name not in spec.tools:
                result: dict[str, Any] = {"error": f"{name} is not a tool of {spec.name}"}
            else:
                await ctx.emit(
                    "tool_start",
                    {"tool": name, "specialist": spec.name, "arguments": arguments},
                    node="tools",
                    namespace=ns,
                )
            started = time.perf_counter()
            if name in spec.tools:
                result = await ctx.tools.call(ctx.tenant_id, name, arguments)
            number_passages(result, offered)
            offered += [h for h in result.get("hits") or [] if isinstance(h, dict)]
            took = (time.perf_counter() - started) * 1e3
            error = result.get("error") if isinstance(result.get("error"), str) else None
            await ctx.tool_used(name, took, error)
            end: dict[str, Any] = {
                "tool": name,
                "specialist": spec.name,
                "ok": error is None,
                "result_preview": preview(result),
                "duration_ms": round(took, 2),
            }
            if error is not None:
                end["error"] = error  # what failed, as the answer will say it
            # The generated query is part of the step: shown, not hidden in the preview.
            # A count is shown even when 0 (the repeated scan that publishes nothing new).
            for key in ("query", "queries", "translation", "sources", "alerts_published"):
                if result.get(key) or result.get(key) == 0:
                    end[key] = result[key]
            await ctx.emit("tool_end", end, node="tools", namespace=ns)
            results.append(
                {
                    "role": "tool",
                    "tool_call_id": tc.get("id") or name,
                    "name": name,
                    "content": json.dumps(result, default=str),
                }
            )
        await ctx.node_end("tools", namespace=ns)
        return {"messages": results}

    return tools


def _after_agent(state: SpecialistState) -> str:
    last = (state.get("messages") or [{}])[-1]
    done = state.get("steps", 0) >= SPECIALIST_STEPS
    return "tools" if last.get("tool_calls") and not done else END


def specialist_graph(spec: Specialist) -> CompiledStateGraph[Any, Any, Any, Any]:
    """One specialist as its own graph: agent (its model, its tools) <-> tools."""
    graph: StateGraph[Any, Any, Any, Any] = StateGraph(SpecialistState, context_schema=RunContext)
    graph.add_node("agent", _agent_node(spec))
    graph.add_node("tools", _tools_node(spec))
    graph.add_edge(START, "agent")
    graph.add_conditional_edges("agent", _after_agent, ["tools", END])
    graph.add_edge("tools", "agent")
    return graph.compile(name=spec.name)


SUBGRAPHS = {spec.name: specialist_graph(spec) for spec in SPECIALISTS}


def _specialist_node(spec: Specialist) -> Node:
    subgraph = SUBGRAPHS[spec.name]

    async def run(
        state: AgentState, config: RunnableConfig, runtime: Runtime[RunContext]
    ) -> dict[str, Any]:
        ctx = runtime.context
        await ctx.node_start(spec.name)
        before = list(state.get("messages", []))
        # Called with this node's config, so it runs as a subgraph: our checkpointer, the
        # namespace `<specialist>:<task>` on its checkpoints and events.
        done = await subgraph.ainvoke(
            {"messages": before, "task": state.get("task") or {}, "steps": 0},
            config,
            context=ctx,
        )
        await ctx.node_end(spec.name)
        return {"messages": list(done.get("messages", []))[len(before) :]}

    return run


agent: StateGraph[Any, Any, Any, Any] = StateGraph(AgentState, context_schema=RunContext)
agent.add_node("supervisor", supervisor)
for _spec in SPECIALISTS:
    agent.add_node(_spec.name, _specialist_node(_spec))
    agent.add_edge(_spec.name, "supervisor")
agent.add_edge(START, "supervisor")
agent.add_conditional_edges("supervisor", after_supervisor, [*(s.name for s in SPECIALISTS), END])
