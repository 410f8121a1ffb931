"""Ingest settings (`AGENTBUS_*`): the shared ones plus the pipeline config file."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from agentbus.runtime.settings import Settings


class IngestSettings(Settings):
    pipeline_config: Path | None = Field(
        default=None, description="Pipeline YAML (chunking, embedding, extraction); None = default"
    )
