"""`agentbus.v1.threads.state`: what a client needs to show a thread."""

from __future__ import annotations

from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver

from agentbus.contracts import ThreadCheckpoint, ThreadState, ThreadStateRequest

from .graphs import Graphs
from .hosted_run import to_json
from .runner import thread_key


def _checkpoint(snapshot: Any) -> ThreadCheckpoint:
    configurable = (snapshot.config or {}).get("configurable", {})
    parent = ((snapshot.parent_config or {}).get("configurable") or {}).get("checkpoint_id")
    created = snapshot.created_at
    return ThreadCheckpoint(
        checkpoint_id=configurable.get("checkpoint_id"),
        parent_checkpoint_id=parent,
        values=to_json(snapshot.values) if isinstance(snapshot.values, dict) else {},
        next=list(snapshot.next),
        metadata=to_json(dict(snapshot.metadata or {})),
        created_at=created,
        interrupts=[
            {"value": to_json(i.value), "id": getattr(i, "id", None)}
            for task in snapshot.tasks
            for i in task.interrupts
        ],
    )


async def thread_state(
    req: ThreadStateRequest, checkpointer: BaseCheckpointSaver[Any], graphs: Graphs
) -> ThreadState:
    config: dict[str, Any] = {
        "configurable": {"thread_id": thread_key(req.tenant_id, req.thread_id)}
    }
    if req.checkpoint_id:
        config["configurable"]["checkpoint_id"] = req.checkpoint_id
    found = await checkpointer.aget_tuple(config)  # type: ignore[arg-type]
    if found is None:
        return ThreadState(
            tenant_id=req.tenant_id,
            thread_id=req.thread_id,
            found=False,
            current=ThreadCheckpoint(checkpoint_id=None),
        )
    # The checkpoint records which graph wrote it; that graph knows how to read the state.
    written = found.metadata or {}
    graph_id = str(written.get("graph_id") or written.get("assistant_id") or "agent")
    if graph_id not in graphs:
        graph_id = "agent" if "agent" in graphs else graphs.ids()[0]
    async with graphs.open(graph_id, config, req.tenant_id) as graph:
        current = _checkpoint(await graph.aget_state(config))  # type: ignore[arg-type]
        history = []
        if req.history_limit:
            history = [
                _checkpoint(snap)
                async for snap in graph.aget_state_history(config, limit=req.history_limit)  # type: ignore[arg-type]
            ]
    return ThreadState(
        tenant_id=req.tenant_id, thread_id=req.thread_id, current=current, history=history
    )
