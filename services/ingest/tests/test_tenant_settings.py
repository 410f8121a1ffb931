"""A tenant's saved pipeline settings on top of the service's config, and the fingerprint the
gateway computes for its re-index progress: the same as ingest's for the same settings."""

from __future__ import annotations

import pytest

from agentbus.ingest.config import PipelineConfig, PipelineConfigError, fingerprint, for_tenant
from agentbus.runtime.stores.pipeline_settings import (
    ChunkingSettings,
    EmbeddingSettings,
    PipelineSettings,
    StoredSettings,
    settings_fingerprint,
)


def test_unsaved_settings_keep_the_service_config() -> None:
    cfg = PipelineConfig.model_validate({"chunking": {"chunk_size": 300, "chunk_overlap": 10}})
    assert for_tenant(cfg, StoredSettings(settings=PipelineSettings())) is cfg


def test_saved_settings_replace_chunking_and_model_and_match_the_gateway_fingerprint() -> None:
    cfg = PipelineConfig.model_validate({"embedding": {"batch_size": 4}})
    saved = PipelineSettings(
        chunking=ChunkingSettings(method="token", size=64, overlap=8),
        embedding=EmbeddingSettings(model="openai/text-embedding-3-small"),
    )
    tenant = for_tenant(cfg, StoredSettings(settings=saved, revision=2))
    assert (tenant.chunking.strategy, tenant.chunking.chunk_size) == ("token", 64)
    assert tenant.chunking.chunk_overlap == 8
    assert tenant.embedding.model == "openai/text-embedding-3-small"
    assert tenant.embedding.batch_size == 4  # the rest of the service's config stays
    assert fingerprint(tenant) == settings_fingerprint(saved, cfg.embedding.dimensions)
    assert fingerprint(tenant) != fingerprint(cfg)
    # The defaults give the fingerprint of the packaged defaults (unchanged by the move).
    assert settings_fingerprint(PipelineSettings(), 384) == fingerprint(PipelineConfig())


def test_settings_that_ingest_cannot_use_are_a_config_error() -> None:
    # Within the API's limits but under ingest's own (none today): built without validation to
    # show the error path names the tenant's settings.
    chunking = ChunkingSettings.model_construct(method="sentence", size=64, overlap=64)
    saved = PipelineSettings.model_construct(
        chunking=chunking, embedding=EmbeddingSettings(), retrieval=PipelineSettings().retrieval
    )
    with pytest.raises(PipelineConfigError, match="tenant settings"):
        for_tenant(PipelineConfig(), StoredSettings.model_construct(settings=saved, revision=1))
