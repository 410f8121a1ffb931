"""Request bodies of the LangGraph Agent Server API, as `langgraph_sdk` sends them.

Unknown fields are a 422 (a typo must not silently change what a run does). Fields the SDK
sends that this server accepts but does not need (`durability`, ...) are declared and ignored;
fields that would change a run in a way this server does not implement are a 422 when set,
naming the field. `webhook` targets are checked against the operator's allow-list when the run
is created (followups.py).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from agentbus.contracts.runs import MultitaskStrategy

from .encode import SUPPORTED_MODES

Id = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]*$")]


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


def modes_of(value: str | list[str] | None) -> list[str]:
    """`stream_mode` as a list; ValueError naming an unsupported mode."""
    if value is None:
        return ["values"]
    modes = [value] if isinstance(value, str) else list(value)
    for mode in modes:
        if mode not in SUPPORTED_MODES:
            hint = " (use 'messages-tuple')" if mode == "messages" else ""
            raise ValueError(
                f"stream mode {mode!r} is not supported{hint}; supported: "
                + ", ".join(SUPPORTED_MODES)
            )
    return list(dict.fromkeys(modes)) or ["values"]


# The longest delay of a run (`after_seconds`): a day.
MAX_DELAY_S = 86_400

Breakpoints = list[Annotated[str, Field(min_length=1, max_length=128)]] | Literal["*"] | None


class RunCreate(Body):
    assistant_id: str = Field(min_length=1, max_length=128)
    input: dict[str, Any] | None = None
    command: dict[str, Any] | None = None
    config: dict[str, Any] | None = None
    context: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None
    stream_mode: str | list[str] | None = None
    stream_subgraphs: bool | None = None
    stream_resumable: bool | None = None
    multitask_strategy: MultitaskStrategy = "reject"
    if_not_exists: Literal["create", "reject"] | None = None
    on_disconnect: Literal["cancel", "continue"] = "continue"
    on_completion: Literal["delete", "keep"] | None = None
    feedback_keys: list[str] | None = None
    checkpoint_during: bool | None = None
    durability: Literal["sync", "async", "exit"] | None = None
    strict_resume: bool | None = None
    langsmith_tracer: dict[str, Any] | None = None
    interrupt_before: Breakpoints = None
    interrupt_after: Breakpoints = None
    webhook: str | None = Field(default=None, min_length=1, max_length=2048)
    checkpoint: dict[str, Any] | None = None
    checkpoint_id: str | None = Field(default=None, min_length=1, max_length=128)
    after_seconds: float | None = Field(default=None, ge=0, le=MAX_DELAY_S)

    @field_validator("stream_mode")
    @classmethod
    def _modes(cls, value: str | list[str] | None) -> str | list[str] | None:
        modes_of(value)
        return value

    @model_validator(mode="after")
    def _supported(self) -> RunCreate:
        if self.checkpoint is not None:
            if self.checkpoint.get("checkpoint_ns"):
                raise ValueError("checkpoint: subgraph checkpoints (checkpoint_ns) not supported")
            given = self.checkpoint.get("checkpoint_id")
            if given is not None and not isinstance(given, str):
                raise ValueError("checkpoint.checkpoint_id must be a string")
            if given and self.checkpoint_id and given != self.checkpoint_id:
                raise ValueError("checkpoint and checkpoint_id name different checkpoints")
        if self.command is not None:
            extra = set(self.command) - {"resume", "update"}
            if extra:
                raise ValueError(f"command supports resume and update, not {sorted(extra)}")
        return self

    @property
    def modes(self) -> list[str]:
        return modes_of(self.stream_mode)

    @property
    def from_checkpoint(self) -> str | None:
        """The checkpoint to run from: `checkpoint_id` or `checkpoint.checkpoint_id`."""
        if self.checkpoint_id:
            return self.checkpoint_id
        given = (self.checkpoint or {}).get("checkpoint_id")
        return str(given) if given else None


class ThreadCreate(Body):
    thread_id: Id | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    if_exists: Literal["raise", "do_nothing"] = "raise"
    supersteps: list[dict[str, Any]] | None = None
    ttl: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _supported(self) -> ThreadCreate:
        if self.supersteps:
            raise ValueError("supersteps is not supported by this server")
        return self


class ThreadPatch(Body):
    metadata: dict[str, Any] = Field(default_factory=dict)
    ttl: dict[str, Any] | None = None


ThreadStatus = Literal["idle", "busy", "interrupted", "error"]


class ThreadSearch(Body):
    metadata: dict[str, Any] | None = None
    values: dict[str, Any] | None = None
    ids: list[str] | None = Field(default=None, max_length=1000)
    status: ThreadStatus | None = None
    limit: int = Field(default=10, ge=1, le=100)
    offset: int = Field(default=0, ge=0)
    sort_by: Literal["thread_id", "status", "created_at", "updated_at"] | None = None
    sort_order: Literal["asc", "desc"] | None = None
    select: list[str] | None = None
    extract: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _supported(self) -> ThreadSearch:
        if self.values:
            raise ValueError("searching threads by values is not supported by this server")
        return self


class HistoryRequest(Body):
    limit: int = Field(default=10, ge=1, le=1000)
    before: str | dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None
    checkpoint: dict[str, Any] | None = None
    select: list[str] | None = None


class AssistantCreate(Body):
    graph_id: str = Field(min_length=1, max_length=128)
    assistant_id: Id | None = None
    config: dict[str, Any] | None = None
    context: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None
    if_exists: Literal["raise", "do_nothing"] = "raise"
    name: str | None = Field(default=None, max_length=256)
    description: str | None = Field(default=None, max_length=4000)


class AssistantPatch(Body):
    graph_id: str | None = Field(default=None, min_length=1, max_length=128)
    config: dict[str, Any] | None = None
    context: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None
    name: str | None = Field(default=None, max_length=256)
    description: str | None = Field(default=None, max_length=4000)


class AssistantCount(Body):
    metadata: dict[str, Any] | None = None
    graph_id: str | None = None
    name: str | None = None


class AssistantVersions(Body):
    metadata: dict[str, Any] | None = None
    limit: int = Field(default=10, ge=1, le=1000)
    offset: int = Field(default=0, ge=0)


class AssistantLatest(Body):
    version: int = Field(ge=1)


class AssistantSearch(Body):
    metadata: dict[str, Any] | None = None
    graph_id: str | None = None
    name: str | None = None
    limit: int = Field(default=10, ge=1, le=1000)
    offset: int = Field(default=0, ge=0)
    sort_by: Literal["assistant_id", "graph_id", "name", "created_at", "updated_at"] | None = None
    sort_order: Literal["asc", "desc"] | None = None
    select: list[str] | None = None


class StateUpdate(Body):
    values: dict[str, Any] | list[Any] | None = None
    as_node: str | None = Field(default=None, max_length=128)
    checkpoint_id: str | None = Field(default=None, max_length=128)
    checkpoint: dict[str, Any] | None = None

    @property
    def from_checkpoint(self) -> str | None:
        given = self.checkpoint_id or (self.checkpoint or {}).get("checkpoint_id")
        return str(given) if given else None


class StateAt(Body):
    checkpoint: dict[str, Any]
    subgraphs: bool | None = None
    select: list[str] | None = None


class ThreadCount(Body):
    metadata: dict[str, Any] | None = None
    values: dict[str, Any] | None = None
    status: ThreadStatus | None = None

    @model_validator(mode="after")
    def _supported(self) -> ThreadCount:
        if self.values:
            raise ValueError("counting threads by values is not supported by this server")
        return self


class ThreadPrune(Body):
    thread_ids: list[str] = Field(min_length=1, max_length=1000)
    strategy: Literal["delete", "keep_latest"] = "delete"


class RunsCancel(Body):
    thread_id: str | None = None
    run_ids: list[str] | None = Field(default=None, max_length=1000)
    status: Literal["pending", "running", "all"] | None = None

    @model_validator(mode="after")
    def _something(self) -> RunsCancel:
        if self.status is None and not self.thread_id and not self.run_ids:
            raise ValueError("name the runs: thread_id, run_ids or status")
        if self.status is not None and (self.thread_id or self.run_ids):
            raise ValueError("status cancels by status alone; leave out thread_id and run_ids")
        return self
