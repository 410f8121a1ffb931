"""Orchestrator settings (`AGENTBUS_*`): the shared ones plus models and concurrency."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from agentbus.runtime.settings import Settings


class OrchestratorSettings(Settings):
    models_config: Path | None = Field(
        default=None, description="LiteLLM Router config (model_list, router_settings)"
    )
    langgraph_config: Path | None = Field(
        default=None,
        description="langgraph.json-compatible graph config; its graphs add to or replace the "
        "built-in ones (agent, echo, steps)",
    )
    # bench/run_overhead.py: with 8, runs queued behind the limit at 32 concurrent clients
    # (TTFT p50 350 ms); 32-64 removes the queueing, CPU per replica is the next limit.
    max_concurrent_runs: int = Field(default=32, ge=1, le=512, description="Runs per replica")
