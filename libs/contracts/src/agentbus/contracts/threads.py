"""Changes to a thread's checkpoints (request/reply, the orchestrator owns the checkpointer):
LangGraph's `update_state` (as a node), copying a thread, pruning threads' checkpoints."""

from __future__ import annotations

from typing import Any, Final, Literal

from pydantic import Field

from .base import SubjectToken, TenantContract
from .subjects import PREFIX

THREADS_UPDATE: Final = f"{PREFIX}.threads.update"


class ThreadUpdateRequest(TenantContract):
    """`update_state`: write `values` as `as_node` (after `checkpoint_id` when given).
    `copy`: every checkpoint of `thread_id` into `target_thread_id`. `prune`: the checkpoints
    of `thread_ids`, all (`delete`) or all but the latest (`keep_latest`)."""

    op: Literal["update_state", "copy", "prune"]
    thread_id: SubjectToken | None = None
    values: dict[str, Any] | list[Any] | None = None
    as_node: str | None = Field(default=None, max_length=128)
    checkpoint_id: str | None = Field(default=None, max_length=128)
    graph_id: str | None = Field(
        default=None, max_length=128, description="The thread's graph, when no checkpoint says"
    )
    target_thread_id: SubjectToken | None = None
    thread_ids: list[SubjectToken] = Field(default_factory=list, max_length=1000)
    strategy: Literal["delete", "keep_latest"] = "delete"


class ThreadUpdated(TenantContract):
    checkpoint_id: str | None = Field(default=None, description="The checkpoint written")
    count: int = Field(default=0, ge=0, description="Threads copied or pruned")
