"""Settings of `agentbus eval` (`AGENTBUS_*`): the judge model and where metrics come from.

Read by the CLI, and by the analytics service for evaluations asked over HTTP
(`POST /api/v1/evaluations`, see `agentbus.analytics.evaluation_jobs`).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from agentbus.runtime.settings import Settings


class EvalSettings(Settings):
    models_config: Path | None = Field(
        default=None,
        description="LiteLLM Router config the orchestrator uses; the judge model is a group in it",
    )
    eval_model: str = Field(
        default="deep",
        min_length=1,
        description="Judge: a group of models_config or a LiteLLM model id; local/... = heuristics",
    )
    eval_metrics_dir: Path | None = Field(
        default=None, description="Extra metric files (*.md) next to the built-in ones"
    )
    eval_concurrency: int = Field(default=4, ge=1, le=64, description="Runs judged at once")
