"""Usage and outcome telemetry every service emits for analytics."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from .base import Event
from .runs import RunStatus


class LlmUsage(Event):
    """One model call. Token counts are what the provider reported (or counted for streams)."""

    run_id: str | None = None
    thread_id: str | None = None
    assistant_id: str | None = None
    operation: Literal["chat", "embeddings", "completion"] = "chat"
    model: str = Field(min_length=1)
    provider: str = Field(min_length=1)
    input_tokens: int = Field(default=0, ge=0)
    output_tokens: int = Field(default=0, ge=0)
    cached_tokens: int = Field(default=0, ge=0)
    cost_usd: float = Field(default=0.0, ge=0)
    latency_ms: float = Field(default=0.0, ge=0)
    ttft_ms: float | None = Field(default=None, ge=0, description="Time to first token, streams")
    streamed: bool = False
    ok: bool = True
    trace_id: str | None = None


class RunFinished(Event):
    run_id: str
    thread_id: str
    assistant_id: str
    status: RunStatus
    duration_ms: float = Field(ge=0)
    node_count: int = Field(default=0, ge=0)
    tool_count: int = Field(default=0, ge=0)
    trace_id: str | None = None


class ToolCalled(Event):
    run_id: str | None = None
    tool: str = Field(min_length=1)
    duration_ms: float = Field(ge=0)
    ok: bool = True
    error: str | None = None
    trace_id: str | None = None
