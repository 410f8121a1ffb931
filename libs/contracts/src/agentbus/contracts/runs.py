"""Agent runs: submission, streamed events, control, and thread state."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from .base import Contract, Event, JsonObject, SubjectToken, TenantContract, Timestamp

MultitaskStrategy = Literal["reject", "enqueue", "interrupt", "rollback"]
RunStatus = Literal["pending", "running", "success", "error", "cancelled", "interrupted", "timeout"]
StreamMode = Literal["values", "updates", "messages", "custom", "events", "debug"]

RunEventType = Literal[
    "metadata",
    "node_start",
    "node_end",
    "routing",
    "model_selection",
    "tool_start",
    "tool_end",
    "token",
    "values",
    "updates",
    "citations",
    "custom",
    "error",
    "end",
]


class RunRequested(Event):
    """Ask the orchestrator to execute one run of an assistant on a thread."""

    run_id: SubjectToken
    thread_id: SubjectToken
    assistant_id: str = Field(default="agent", min_length=1, max_length=128)
    input: JsonObject | None = Field(
        default=None, description="Graph input, e.g. {'messages': [...]}"
    )
    command: JsonObject | None = Field(
        default=None, description="LangGraph Command to resume an interrupted thread"
    )
    config: JsonObject = Field(default_factory=dict)
    context: JsonObject | None = Field(
        default=None, description="LangGraph runtime context for the graph (assistant's + run's)"
    )
    graph_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=128,
        description="The graph to run; None = the graph named like assistant_id (built-ins)",
    )
    checkpoint_id: str | None = Field(
        default=None,
        max_length=128,
        description="Run from this checkpoint of the thread (a fork: LangGraph's regenerate)",
    )
    interrupt_before: list[str] | Literal["*"] | None = Field(
        default=None, description="Pause before these nodes (LangGraph's interrupt_before)"
    )
    interrupt_after: list[str] | Literal["*"] | None = Field(
        default=None, description="Pause after these nodes"
    )
    stream_subgraphs: bool = Field(
        default=False, description="Also stream the parts of subgraphs (events with a namespace)"
    )
    metadata: JsonObject = Field(default_factory=dict)
    stream_modes: list[StreamMode] = Field(default_factory=lambda: list[StreamMode](["values"]))
    multitask_strategy: MultitaskStrategy = "reject"
    user_id: str | None = None


class RunEvent(Event):
    """One step of a run, in order. `seq` starts at 0 and has no gaps within a run."""

    run_id: SubjectToken
    thread_id: SubjectToken
    seq: int = Field(ge=0)
    type: RunEventType
    node: str | None = None
    data: JsonObject = Field(default_factory=dict)
    status: RunStatus | None = Field(default=None, description="Set on the final `end` event")
    namespace: list[str] | None = Field(
        default=None,
        description="The subgraph that produced it ('node:task' per level), for stream_subgraphs",
    )


class RunControl(TenantContract):
    """Steer a run in flight (core NATS, not stored: a run that is not running ignores it)."""

    run_id: SubjectToken
    action: Literal["cancel", "interrupt"]
    reason: str | None = Field(default=None, max_length=500)
    ts: Timestamp | None = None


class ThreadStateRequest(TenantContract):
    thread_id: SubjectToken
    checkpoint_id: str | None = None
    history_limit: int = Field(default=0, ge=0, le=1000)


class ThreadCheckpoint(Contract):
    """The thread's state at one checkpoint."""

    checkpoint_id: str | None
    parent_checkpoint_id: str | None = None
    values: JsonObject = Field(default_factory=dict)
    next: list[str] = Field(default_factory=list)
    metadata: JsonObject = Field(default_factory=dict)
    created_at: Timestamp | None = None
    interrupts: list[JsonObject] = Field(default_factory=list)


class ThreadState(TenantContract):
    """Reply to ThreadStateRequest: the current checkpoint and, when asked for, earlier ones."""

    thread_id: SubjectToken
    found: bool = True
    current: ThreadCheckpoint
    history: list[ThreadCheckpoint] = Field(default_factory=list)
