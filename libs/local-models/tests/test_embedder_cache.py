"""The embedding model is unpacked into the cache once, safely when several processes start at once
(a new machine's first `make run` starts ingest and retrieval together; test workers too)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from agentbus.local_models.embedder import MODEL_NAME, _extract

all_minilm_l6_v2 = pytest.importorskip("all_minilm_l6_v2")


def test_concurrent_first_starts_each_find_a_whole_model(tmp_path: Path) -> None:
    model_dir = tmp_path / "agentbus-models" / MODEL_NAME
    with ThreadPoolExecutor(3) as pool:
        starts = [pool.submit(_extract, all_minilm_l6_v2.extract_model, model_dir) for _ in "abc"]
        for start in starts:
            start.result()
    assert (model_dir / "config.json").is_file()
    assert (model_dir / "1_Pooling").is_dir()
    # No scratch copy is left behind.
    assert [p.name for p in model_dir.parent.iterdir()] == [MODEL_NAME]


def test_a_half_written_directory_from_an_older_version_is_replaced(tmp_path: Path) -> None:
    model_dir = tmp_path / MODEL_NAME
    (model_dir / "1_Pooling").mkdir(parents=True)
    _extract(all_minilm_l6_v2.extract_model, model_dir)
    assert (model_dir / "config.json").is_file()
