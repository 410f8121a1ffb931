"""The ingest pipeline config: how documents are chunked, embedded and mined for entities.

It lives in YAML (`pipeline.yaml` packaged with this module by default), is validated by the closed
Pydantic models below, and can be adjusted per request through `ChunkingOverrides`.
`fingerprint()` condenses everything that changes the stored chunks or vectors, so the worker can
tell "same bytes, same pipeline" (a no-op) from "same bytes, new pipeline" (re-index).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Self

import yaml  # type: ignore[import-untyped]  # no types-PyYAML in the environment
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from agentbus.contracts import ChunkingOverrides
from agentbus.runtime.stores.pipeline_settings import (
    CHUNKER_VERSION,
    StoredSettings,
    vectors_fingerprint,
)

# CHUNKER_VERSION (bumped when the chunker's output changes) lives with the per-tenant settings
# in agentbus.runtime.stores.pipeline_settings: the gateway computes the same fingerprint.
__all__ = [
    "CHUNKER_VERSION",
    "DEFAULT_CONFIG_PATH",
    "ChunkingConfig",
    "EmbeddingConfig",
    "ExtractionConfig",
    "PipelineConfig",
    "PipelineConfigError",
    "fingerprint",
    "for_tenant",
    "load_pipeline_config",
    "with_overrides",
]

# Package data next to this module, so an installed wheel (a container image) has it too.
DEFAULT_CONFIG_PATH = Path(__file__).resolve().parent / "pipeline.yaml"

MIB = 1024 * 1024


class PipelineConfigError(ValueError):
    """A pipeline config (file or override) that cannot be used; the message is one line."""


class _Model(BaseModel):
    # Closed (a typo is an error, not a silently ignored key) and frozen (safe to share/cache).
    model_config = ConfigDict(extra="forbid", frozen=True)


class ChunkingConfig(_Model):
    strategy: Literal["sentence", "token", "markdown"] = Field(
        default="sentence",
        description="sentence: sentence-aware packing; token: fixed token windows; "
        "markdown: split at headings, then sentence-pack large sections",
    )
    chunk_size: int = Field(default=200, ge=32, le=8192, description="Maximum tokens per chunk")
    chunk_overlap: int = Field(default=30, ge=0, description="Tokens shared by adjacent chunks")

    @model_validator(mode="after")
    def _overlap_below_size(self) -> Self:
        if self.chunk_overlap >= self.chunk_size:
            raise ValueError(
                f"chunk_overlap ({self.chunk_overlap}) must be smaller than "
                f"chunk_size ({self.chunk_size})"
            )
        return self


class EmbeddingConfig(_Model):
    model: str = Field(default="local/all-MiniLM-L6-v2", min_length=1, description="LiteLLM name")
    batch_size: int = Field(default=64, ge=1, le=2048)
    # pgvector's vector type holds at most 16000 dimensions (HNSW indexes at most 2000).
    dimensions: int = Field(default=384, ge=1, le=16000)


class ExtractionConfig(_Model):
    mode: Literal["deterministic", "llm"] = "deterministic"
    model: str | None = Field(default=None, min_length=1, description="LiteLLM model for llm mode")
    max_entities_per_chunk: int = Field(default=20, ge=1, le=1000)

    @model_validator(mode="after")
    def _llm_needs_model(self) -> Self:
        if self.mode == "llm" and self.model is None:
            raise ValueError("model is required when mode is 'llm'")
        return self


class PipelineConfig(_Model):
    version: int = Field(default=1, description="Config format version")
    chunking: ChunkingConfig = Field(default_factory=ChunkingConfig)
    embedding: EmbeddingConfig = Field(default_factory=EmbeddingConfig)
    extraction: ExtractionConfig = Field(default_factory=ExtractionConfig)
    max_file_bytes: int = Field(default=25 * MIB, ge=1, description="Larger uploads are rejected")

    @model_validator(mode="after")
    def _known_version(self) -> Self:
        if self.version != 1:
            raise ValueError(f"unsupported version {self.version} (this build reads version 1)")
        return self


def _first_error(exc: ValidationError) -> str:
    """`field.path: message` for the first error, plus how many more there are."""
    error = exc.errors()[0]
    field = ".".join(str(part) for part in error["loc"])
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] not in ("missing", "extra_forbidden", "value_error") and "input" in error:
        message += f" (got {error['input']!r})"
    more = exc.error_count() - 1
    where = f"{field}: " if field else ""  # a model-level check names its fields itself
    return f"{where}{message}" + (f" (+{more} more)" if more else "")


def load_pipeline_config(path: Path | None = None) -> PipelineConfig:
    """Read and validate a pipeline config; None means the packaged default. The file must
    exist: a missing one is an error, never a silent fallback to built-in values."""
    if path is None:
        path = DEFAULT_CONFIG_PATH
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PipelineConfigError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PipelineConfigError(f"{path}: cannot read: {exc}") from None
    try:
        data: Any = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        where = ""
        mark = getattr(exc, "problem_mark", None)
        if mark is not None:
            where = f" at line {mark.line + 1}, column {mark.column + 1}"
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise PipelineConfigError(f"{path}: invalid YAML{where}: {problem}") from None
    if data is None:
        data = {}  # an empty (or all-comments) file means "all defaults"
    if not isinstance(data, dict):
        raise PipelineConfigError(
            f"{path}: expected a mapping at the top level, got {type(data).__name__}"
        )
    try:
        return PipelineConfig.model_validate(data)
    except ValidationError as exc:
        raise PipelineConfigError(f"{path}: {_first_error(exc)}") from None


def with_overrides(cfg: PipelineConfig, overrides: ChunkingOverrides) -> PipelineConfig:
    """Apply a request's chunking overrides; the combination is validated again.

    When a request changes `chunk_size` but not `chunk_overlap`, the configured overlap is scaled
    by the same ratio (200/30 asked for 100 gives 100/15): an absolute overlap meant for one size
    is usually wrong for another, and could even exceed the new size.
    """
    current = cfg.chunking
    size = overrides.chunk_size if overrides.chunk_size is not None else current.chunk_size
    overlap = overrides.chunk_overlap
    if overlap is None:
        overlap = current.chunk_overlap * size // current.chunk_size
    strategy = overrides.strategy if overrides.strategy is not None else current.strategy
    try:
        chunking = ChunkingConfig(strategy=strategy, chunk_size=size, chunk_overlap=overlap)
    except ValidationError as exc:
        raise PipelineConfigError(f"chunking overrides: {_first_error(exc)}") from None
    if chunking == current:
        return cfg
    return cfg.model_copy(update={"chunking": chunking})


def for_tenant(cfg: PipelineConfig, stored: StoredSettings) -> PipelineConfig:
    """The service's config with a tenant's saved chunking and embedding model on top.

    A tenant that never saved settings (revision 0) gets the service's config unchanged, so
    `pipeline.yaml` stays the default. The vector width is the platform's, whatever the model.
    """
    if stored.revision == 0:
        return cfg
    c, model = stored.settings.chunking, stored.settings.embedding.model
    try:
        chunking = ChunkingConfig(strategy=c.method, chunk_size=c.size, chunk_overlap=c.overlap)
    except ValidationError as exc:
        raise PipelineConfigError(f"tenant settings: {_first_error(exc)}") from None
    embedding = cfg.embedding.model_copy(update={"model": model})
    return cfg.model_copy(update={"chunking": chunking, "embedding": embedding})


def fingerprint(cfg: PipelineConfig) -> str:
    """A short stable hash of the settings that shape chunks and vectors.

    Covers chunking (strategy, size, overlap, chunker version) and the embedding model and
    dimensions. Batch size, file limit and extraction settings are left out: they do not change
    what is stored in the vector index.
    """
    c = cfg.chunking
    return vectors_fingerprint(
        c.strategy, c.chunk_size, c.chunk_overlap, cfg.embedding.model, cfg.embedding.dimensions
    )
