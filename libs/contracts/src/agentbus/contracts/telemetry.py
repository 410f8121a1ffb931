"""Usage and outcome telemetry every service emits for analytics."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from .base import Event
from .runs import RunStatus

TEXT_LIMIT = 16_000


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
    cache_hit: bool = Field(
        default=False,
        description="Answered from the response cache: no model was called, cost_usd is 0 and "
        "the token counts are those of the cached answer",
    )


class RunFinished(Event):
    run_id: str
    thread_id: str
    assistant_id: str
    status: RunStatus
    duration_ms: float = Field(ge=0)
    node_count: int = Field(default=0, ge=0)
    tool_count: int = Field(default=0, ge=0)
    trace_id: str | None = None
    # What the run was asked and answered, truncated, so evaluations can judge recorded runs
    # without reading another service's store.
    question: str | None = Field(default=None, max_length=TEXT_LIMIT)
    answer: str | None = Field(default=None, max_length=TEXT_LIMIT)
    contexts: list[str] = Field(default_factory=list, max_length=20)


class ToolCalled(Event):
    run_id: str | None = None
    tool: str = Field(min_length=1)
    duration_ms: float = Field(ge=0)
    ok: bool = True
    error: str | None = None
    trace_id: str | None = None


class EvaluationScored(Event):
    """One metric's score for one recorded run, from `agentbus eval`."""

    evaluation_id: str = Field(min_length=1, max_length=128, description="One eval invocation")
    run_id: str = Field(min_length=1)
    trace_id: str | None = None
    metric: str = Field(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9_-]*$")
    score: float = Field(ge=0, le=1, description="1 is best for every metric")
    judge: Literal["llm", "heuristic"]
    judge_model: str | None = None
    reason: str = Field(default="", max_length=2000)
