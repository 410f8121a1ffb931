"""How one run drives a hosted graph: its config and context, and, for a user's graph (whose
nodes know nothing of the platform), its LangGraph stream turned into run events.

A built-in graph's nodes emit their own events through `RunContext`. A user's graph is
streamed with LangGraph's `messages`, `custom` and `tasks` modes as well, which become
`token` (with the whole message chunk), `custom` and `node_start`/`node_end` events.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from langgraph.pregel import Pregel
from pydantic import BaseModel

from agentbus.contracts import RunRequested
from agentbus.contracts.runs import RunEventType

from .context import RunContext

AnyGraph = Pregel[Any, Any, Any, Any]

NATIVE_MODES = ["updates", "values"]
USER_MODES = ["updates", "values", "messages", "custom", "tasks"]

# Keys of `configurable` the platform sets; a run's config cannot override them.
RESERVED = ("thread_id", "checkpoint_ns", "__pregel_checkpointer", "__pregel_store")


def to_json(value: Any) -> Any:
    """State values as plain JSON: LangChain messages and Pydantic states as their model_dump,
    dataclasses as dicts, anything else unknown as its string."""
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_json(v) for v in value]
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    if isinstance(value, BaseModel):
        return to_json(value.model_dump(mode="json"))
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_json(dataclasses.asdict(value))
    return str(value)


def run_config(run: RunRequested, thread_key: str, graph_id: str) -> dict[str, Any]:
    """LangGraph's run config: the run's (and its assistant's) config plus the platform's keys."""
    given = dict(run.config or {})
    configurable = {
        k: v for k, v in dict(given.get("configurable") or {}).items() if k not in RESERVED
    }
    configurable.update(
        thread_id=thread_key,
        run_id=run.run_id,
        assistant_id=run.assistant_id,
        graph_id=graph_id,
        user_id=run.user_id,
    )
    if run.checkpoint_id:
        configurable["checkpoint_id"] = run.checkpoint_id
    config: dict[str, Any] = {
        "configurable": configurable,
        "metadata": {
            **dict(given.get("metadata") or {}),
            "run_id": run.run_id,
            "assistant_id": run.assistant_id,
            "graph_id": graph_id,
        },
        "recursion_limit": int(given.get("recursion_limit") or 50),
    }
    if isinstance(given.get("tags"), list):
        config["tags"] = [str(t) for t in given["tags"]]
    return config


def user_context(graph: AnyGraph, run: RunRequested) -> Any:
    """The run's context as the graph's `context_schema` expects it (dataclass, Pydantic model
    or a plain dict for a TypedDict)."""
    context = dict(run.context or {})
    schema = getattr(getattr(graph, "builder", None), "context_schema", None)
    if schema is None:
        return context or None
    if isinstance(schema, type) and issubclass(schema, BaseModel):
        return schema.model_validate(context)
    if dataclasses.is_dataclass(schema) and isinstance(schema, type):
        return schema(**context)
    return context


def user_input(value: Any) -> Any:
    """Messages the gateway gave both `type` (LangChain) and `role` (OpenAI) keep only `type`:
    LangChain would otherwise file the second as an additional kwarg."""
    if not isinstance(value, dict) or not isinstance(value.get("messages"), list):
        return value
    messages = [
        {k: v for k, v in m.items() if k != "role"}
        if isinstance(m, dict) and "type" in m and "role" in m
        else m
        for m in value["messages"]
    ]
    return {**value, "messages": messages}


async def emit_user_part(
    ctx: RunContext, mode: str, chunk: Any, namespace: list[str] | None = None
) -> None:
    """One part of a user's graph stream as run events; `namespace` for a subgraph's part."""
    ns = namespace or None
    if mode in {"values", "updates"}:
        kind: RunEventType = "values" if mode == "values" else "updates"
        await ctx.emit(kind, to_json(chunk) if isinstance(chunk, dict) else {}, namespace=ns)
    elif mode == "messages":
        message, meta = chunk
        node = meta.get("langgraph_node") if isinstance(meta, dict) else None
        data = to_json(message)
        if not isinstance(data, dict) or data.get("type") not in ("ai", "AIMessageChunk"):
            return  # the stream of what the model says; inputs and tool results are in values
        content = data.get("content")
        text = content if isinstance(content, str) else ""
        if isinstance(content, list):
            text = "".join(
                str(p.get("text", "")) for p in content if isinstance(p, dict) and "text" in p
            )
        await ctx.emit("token", {"text": text, "message": data}, node=node, namespace=ns)
    elif mode == "custom":
        data = chunk if isinstance(chunk, dict) else {"data": to_json(chunk)}
        await ctx.emit("custom", data, namespace=ns)
    elif mode == "tasks" and isinstance(chunk, dict):
        name = str(chunk.get("name", ""))
        if name.startswith("__"):
            return
        if "input" in chunk:
            ctx.nodes += 1
            await ctx.emit("node_start", node=name, namespace=ns)
        else:
            await ctx.emit("node_end", node=name, namespace=ns)
