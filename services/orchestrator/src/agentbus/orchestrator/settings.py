"""Orchestrator settings (`AGENTBUS_*`): the shared ones plus models and concurrency."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from agentbus.runtime.settings import Settings


class OrchestratorSettings(Settings):
    models_config: Path | None = Field(
        default=None, description="LiteLLM Router config (model_list, router_settings)"
    )
    trace_model_content: bool = Field(
        default=True,
        description="Put prompts and answers (each cut at 4000 characters) into model-call spans, "
        "where Langfuse and LangSmith show them; false keeps only models, usage and cost",
    )
    langgraph_config: Path | None = Field(
        default=None,
        description="langgraph.json-compatible graph config; its graphs add to or replace the "
        "built-in ones (agent, echo, steps)",
    )
    store_index_fields: list[str] | None = Field(
        default=None,
        description="Semantic search in the LangGraph store: the value fields to embed, e.g. "
        '["$"] for the whole value or ["text"]; unset = no index (filters only)',
    )
    store_index_dims: int = Field(
        default=384, ge=1, le=8192, description="Vector size of the `embed` model group"
    )
    # bench/run_overhead.py: with 8, runs queued behind the limit at 32 concurrent clients
    # (TTFT p50 350 ms); 32-64 removes the queueing, CPU per replica is the next limit.
    max_concurrent_runs: int = Field(default=32, ge=1, le=512, description="Runs per replica")
    # One tenant may hold only part of a replica's slots; its further runs wait (NAK with the
    # consumer's delays) and end `error` with reason `tenant_run_limit` on the last delivery.
    max_runs_per_tenant: int = Field(
        default=8, ge=1, le=512, description="Runs of one tenant a replica executes at once"
    )
    run_timeout_s: float = Field(
        default=900.0, gt=0, description="Time limit of a run; past it the run ends with `timeout`"
    )
    run_timeouts: dict[str, float] = Field(
        default_factory=dict,
        description='Per-assistant time limits in seconds, e.g. {"agent": 300}',
    )

    def run_timeout(self, assistant_id: str) -> float:
        return float(self.run_timeouts.get(assistant_id, self.run_timeout_s))
