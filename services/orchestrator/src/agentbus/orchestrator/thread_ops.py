"""`agentbus.v1.threads.update`: LangGraph's update_state (as a node), a thread's copy, and
pruning, on the PostgreSQL checkpointer (keys are `tenant:thread`, so a tenant reaches only its
own threads)."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.errors import InvalidUpdateError

from agentbus.contracts import ErrorReply, ThreadUpdated, ThreadUpdateRequest

from .graphs import Graphs, is_native
from .hosted_run import user_input
from .runner import thread_key


def _config(key: str, checkpoint_id: str | None = None, ns: str = "") -> dict[str, Any]:
    configurable: dict[str, Any] = {"thread_id": key, "checkpoint_ns": ns}
    if checkpoint_id:
        configurable["checkpoint_id"] = checkpoint_id
    return {"configurable": configurable}


async def update_state(
    req: ThreadUpdateRequest, checkpointer: BaseCheckpointSaver[Any], graphs: Graphs
) -> ThreadUpdated | ErrorReply:
    assert req.thread_id is not None
    config = _config(thread_key(req.tenant_id, req.thread_id), req.checkpoint_id)
    found = await checkpointer.aget_tuple(config)  # type: ignore[arg-type]
    if req.checkpoint_id and found is None:
        return ErrorReply(error=f"checkpoint {req.checkpoint_id!r} not found", reason="not_found")
    written = (found.metadata if found else None) or {}
    graph_id = str(written.get("graph_id") or written.get("assistant_id") or req.graph_id or "")
    if graph_id not in graphs:
        return ErrorReply(
            error="the thread has no graph yet: run it once, or name its assistant",
            reason="no_graph",
        )
    # The new checkpoint says which graph wrote it, as a run's checkpoints do.
    marks = {"graph_id": graph_id, "assistant_id": written.get("assistant_id") or graph_id}
    async with graphs.open(graph_id, config, req.tenant_id) as graph:
        values = req.values if is_native(graph) else user_input(req.values)
        try:
            written_config = await graph.aupdate_state(
                {**config, "metadata": marks},  # type: ignore[typeddict-item]
                values,
                as_node=req.as_node,
            )
        except (InvalidUpdateError, ValueError, KeyError) as exc:
            return ErrorReply(error=f"{type(exc).__name__}: {exc}"[:1000], reason="invalid_update")
    checkpoint_id = written_config.get("configurable", {}).get("checkpoint_id")
    return ThreadUpdated(tenant_id=req.tenant_id, checkpoint_id=checkpoint_id, count=1)


async def copy_thread(
    req: ThreadUpdateRequest, checkpointer: BaseCheckpointSaver[Any]
) -> ThreadUpdated:
    """Every checkpoint (oldest first, so each parent exists) and its pending writes."""
    assert req.thread_id is not None and req.target_thread_id is not None
    source = thread_key(req.tenant_id, req.thread_id)
    target = thread_key(req.tenant_id, req.target_thread_id)
    # Every namespace of the thread: no checkpoint_ns in the filter.
    listed = checkpointer.alist({"configurable": {"thread_id": source}})
    found = [t async for t in listed]
    for tup in reversed(found):
        ns = str(tup.config["configurable"].get("checkpoint_ns", ""))
        parent = (tup.parent_config or {}).get("configurable", {}).get("checkpoint_id")
        await checkpointer.aput(
            _config(target, parent, ns),  # type: ignore[arg-type]
            tup.checkpoint,
            tup.metadata,
            dict(tup.checkpoint["channel_versions"]),
        )
        by_task: dict[str, list[tuple[str, Any]]] = defaultdict(list)
        for task_id, channel, value in tup.pending_writes or []:
            by_task[task_id].append((channel, value))
        for task_id, writes in by_task.items():
            await checkpointer.aput_writes(
                _config(target, tup.checkpoint["id"], ns),  # type: ignore[arg-type]
                writes,
                task_id,
            )
    return ThreadUpdated(tenant_id=req.tenant_id, checkpoint_id=None, count=1 if found else 0)


async def prune(req: ThreadUpdateRequest, checkpointer: BaseCheckpointSaver[Any]) -> ThreadUpdated:
    keys = [thread_key(req.tenant_id, t) for t in req.thread_ids]
    if req.strategy == "delete":
        for key in keys:
            await checkpointer.adelete_thread(key)
    else:
        await checkpointer.aprune(keys, strategy="keep_latest")
    return ThreadUpdated(tenant_id=req.tenant_id, count=len(keys))


async def thread_update(
    req: ThreadUpdateRequest, checkpointer: BaseCheckpointSaver[Any], graphs: Graphs
) -> ThreadUpdated | ErrorReply:
    if req.op == "prune":
        return await prune(req, checkpointer)
    if req.thread_id is None:
        return ErrorReply(error=f"{req.op} needs a thread_id", reason="schema")
    if req.op == "copy":
        if req.target_thread_id is None:
            return ErrorReply(error="copy needs a target_thread_id", reason="schema")
        return await copy_thread(req, checkpointer)
    return await update_state(req, checkpointer, graphs)
