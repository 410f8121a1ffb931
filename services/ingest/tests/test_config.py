"""Pipeline config: the packaged default, loading, validation errors, overrides, fingerprint."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentbus.contracts import ChunkingOverrides
from agentbus.ingest import config
from agentbus.ingest.config import (
    ChunkingConfig,
    EmbeddingConfig,
    ExtractionConfig,
    PipelineConfig,
    PipelineConfigError,
    fingerprint,
    load_pipeline_config,
    with_overrides,
)


def write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "pipeline.yaml"
    path.write_text(body, encoding="utf-8")
    return path


def error_for(path: Path) -> str:
    with pytest.raises(PipelineConfigError) as caught:
        load_pipeline_config(path)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: ")
    return message


def test_packaged_default_exists_and_matches_builtin_defaults() -> None:
    assert config.DEFAULT_CONFIG_PATH.is_file()
    packaged = Path(__file__).parents[1] / "src" / "agentbus" / "ingest" / "pipeline.yaml"
    assert packaged.resolve() == config.DEFAULT_CONFIG_PATH
    assert load_pipeline_config() == PipelineConfig()


def test_defaults() -> None:
    cfg = PipelineConfig()
    assert cfg.version == 1
    assert cfg.chunking == ChunkingConfig(strategy="sentence", chunk_size=200, chunk_overlap=30)
    assert cfg.embedding == EmbeddingConfig(
        model="local/all-MiniLM-L6-v2", batch_size=64, dimensions=384
    )
    assert cfg.extraction == ExtractionConfig(
        mode="deterministic", model=None, max_entities_per_chunk=20
    )
    assert cfg.max_file_bytes == 25 * 1024 * 1024


def test_missing_default_file_is_an_error_not_a_silent_fallback(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(config, "DEFAULT_CONFIG_PATH", tmp_path / "absent.yaml")
    with pytest.raises(PipelineConfigError, match=r"absent\.yaml: file not found"):
        load_pipeline_config()


def test_load_custom_file_with_partial_sections(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        chunking:
          strategy: markdown
          chunk_size: 512
        embedding:
          model: openai/text-embedding-3-small
          dimensions: 1536
        max_file_bytes: 1048576
        """.replace("\n        ", "\n"),
    )
    cfg = load_pipeline_config(path)
    assert cfg.chunking == ChunkingConfig(strategy="markdown", chunk_size=512, chunk_overlap=30)
    assert cfg.embedding.model == "openai/text-embedding-3-small"
    assert cfg.embedding.dimensions == 1536
    assert cfg.embedding.batch_size == 64
    assert cfg.extraction == ExtractionConfig()
    assert cfg.max_file_bytes == 1048576


@pytest.mark.parametrize("body", ["", "# only comments\n", "---\n"])
def test_empty_file_means_defaults(tmp_path: Path, body: str) -> None:
    assert load_pipeline_config(write(tmp_path, body)) == PipelineConfig()


def test_missing_explicit_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    assert error_for(path) == f"{path}: file not found"


def test_invalid_yaml_names_file_and_position(tmp_path: Path) -> None:
    path = write(tmp_path, "chunking:\n  chunk_size: [1, 2\n  strategy: token\n")
    message = error_for(path)
    assert "invalid YAML at line 3" in message


def test_tab_indentation_is_a_yaml_error(tmp_path: Path) -> None:
    assert "invalid YAML" in error_for(write(tmp_path, "chunking:\n\tchunk_size: 100\n"))


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    message = error_for(write(tmp_path, "- a\n- b\n"))
    assert message.endswith("expected a mapping at the top level, got list")


GE = "Input should be greater than or equal to"

VALIDATION_CASES = {
    "chunking:\n  chunk_sise: 100\n": "chunking.chunk_sise: Extra inputs are not permitted",
    "embeding: {}\n": "embeding: Extra inputs are not permitted",
    "chunking:\n  chunk_size: 10\n": f"chunking.chunk_size: {GE} 32 (got 10)",
    "chunking:\n  chunk_size: 9000\n": (
        "chunking.chunk_size: Input should be less than or equal to 8192 (got 9000)"
    ),
    "chunking:\n  chunk_size: 100\n  chunk_overlap: 100\n": (
        "chunking: chunk_overlap (100) must be smaller than chunk_size (100)"
    ),
    "chunking:\n  chunk_overlap: -1\n": f"chunking.chunk_overlap: {GE} 0 (got -1)",
    "chunking:\n  strategy: paragraph\n": (
        "chunking.strategy: Input should be 'sentence', 'token' or 'markdown' (got 'paragraph')"
    ),
    "embedding:\n  batch_size: 0\n": f"embedding.batch_size: {GE} 1 (got 0)",
    "chunking: fast\n": (
        "chunking: Input should be a valid dictionary or instance of ChunkingConfig (got 'fast')"
    ),
    "extraction:\n  mode: llm\n": "extraction: model is required when mode is 'llm'",
    "version: 2\n": "unsupported version 2 (this build reads version 1)",
}


@pytest.mark.parametrize(("body", "expected"), VALIDATION_CASES.items())
def test_validation_errors_name_the_field(tmp_path: Path, body: str, expected: str) -> None:
    path = write(tmp_path, body)
    assert error_for(path) == f"{path}: {expected}"


def test_several_errors_are_counted(tmp_path: Path) -> None:
    message = error_for(write(tmp_path, "chunking:\n  chunk_size: 1\n  strategy: x\n"))
    assert message.endswith("(+1 more)")


def test_error_is_a_value_error() -> None:
    assert issubclass(PipelineConfigError, ValueError)


def test_models_are_closed_and_frozen() -> None:
    with pytest.raises(ValueError):
        ChunkingConfig(chunk_sise=100)  # type: ignore[call-arg]
    cfg = PipelineConfig()
    with pytest.raises(ValueError):
        cfg.chunking.chunk_size = 10  # type: ignore[misc]
    assert hash(cfg.chunking) == hash(ChunkingConfig())


# --- overrides --------------------------------------------------------------------------------


def test_no_overrides_returns_the_same_config() -> None:
    cfg = PipelineConfig()
    assert with_overrides(cfg, ChunkingOverrides()) is cfg


def test_overrides_replace_the_given_fields_only() -> None:
    cfg = PipelineConfig()
    out = with_overrides(cfg, ChunkingOverrides(chunk_size=400, chunk_overlap=50, strategy="token"))
    assert out.chunking == ChunkingConfig(strategy="token", chunk_size=400, chunk_overlap=50)
    assert out.embedding == cfg.embedding
    assert out.extraction == cfg.extraction
    assert cfg.chunking == ChunkingConfig()  # the original is untouched
    only_strategy = with_overrides(cfg, ChunkingOverrides(strategy="markdown"))
    assert only_strategy.chunking == ChunkingConfig(strategy="markdown")


def test_size_override_scales_the_inherited_overlap() -> None:
    cfg = PipelineConfig()  # 200 / 30
    assert with_overrides(cfg, ChunkingOverrides(chunk_size=100)).chunking.chunk_overlap == 15
    assert with_overrides(cfg, ChunkingOverrides(chunk_size=32)).chunking.chunk_overlap == 4
    assert with_overrides(cfg, ChunkingOverrides(chunk_size=1000)).chunking.chunk_overlap == 150
    explicit = with_overrides(cfg, ChunkingOverrides(chunk_size=100, chunk_overlap=0))
    assert explicit.chunking.chunk_overlap == 0


@pytest.mark.parametrize(
    "overrides",
    [
        ChunkingOverrides(chunk_overlap=200),
        ChunkingOverrides(chunk_overlap=250),
        ChunkingOverrides(chunk_size=64, chunk_overlap=64),
    ],
)
def test_bad_override_combination(overrides: ChunkingOverrides) -> None:
    with pytest.raises(PipelineConfigError) as caught:
        with_overrides(PipelineConfig(), overrides)
    assert str(caught.value).startswith("chunking overrides: chunk_overlap (")
    assert "chunk_overlap" in str(caught.value)


def test_override_result_is_revalidated_message() -> None:
    with pytest.raises(PipelineConfigError, match=r"chunk_overlap \(300\) must be smaller"):
        with_overrides(PipelineConfig(), ChunkingOverrides(chunk_overlap=300))


# --- fingerprint ------------------------------------------------------------------------------


def test_fingerprint_is_short_and_stable() -> None:
    fp = fingerprint(PipelineConfig())
    assert len(fp) == 16
    int(fp, 16)
    assert fingerprint(PipelineConfig()) == fp
    assert fingerprint(load_pipeline_config()) == fp


@pytest.mark.parametrize(
    "changed",
    [
        {"chunking": ChunkingConfig(chunk_size=300)},
        {"chunking": ChunkingConfig(chunk_overlap=10)},
        {"chunking": ChunkingConfig(strategy="token")},
        {"embedding": EmbeddingConfig(model="openai/text-embedding-3-small")},
        {"embedding": EmbeddingConfig(dimensions=768)},
    ],
)
def test_fingerprint_changes_with_what_shapes_chunks_and_vectors(
    changed: dict[str, object],
) -> None:
    base = PipelineConfig()
    assert fingerprint(base.model_copy(update=changed)) != fingerprint(base)


@pytest.mark.parametrize(
    "changed",
    [
        {"embedding": EmbeddingConfig(batch_size=8)},
        {"extraction": ExtractionConfig(mode="llm", model="fast")},
        {"max_file_bytes": 10},
    ],
)
def test_fingerprint_ignores_what_does_not(changed: dict[str, object]) -> None:
    base = PipelineConfig()
    assert fingerprint(base.model_copy(update=changed)) == fingerprint(base)


def test_fingerprint_follows_overrides() -> None:
    base = PipelineConfig()
    assert fingerprint(with_overrides(base, ChunkingOverrides())) == fingerprint(base)
    changed = with_overrides(base, ChunkingOverrides(chunk_size=400))
    assert fingerprint(changed) != fingerprint(base)
