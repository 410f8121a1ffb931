"""Batched embeddings through LiteLLM, with usage reported for telemetry."""

from __future__ import annotations

import time
from dataclasses import dataclass

from .client import litellm


@dataclass(frozen=True)
class EmbeddingBatch:
    vectors: list[list[float]]
    model: str
    input_tokens: int
    cost_usd: float
    latency_ms: float


async def embed(texts: list[str], model: str, *, dimensions: int | None = None) -> EmbeddingBatch:
    """Embed one batch. Any LiteLLM embedding model works; `local/...` runs in-process."""
    started = time.perf_counter()
    response = await litellm.aembedding(model=model, input=texts)
    vectors = [list(item["embedding"]) for item in response.data]
    if dimensions is not None and any(len(v) != dimensions for v in vectors):
        got = len(vectors[0]) if vectors else 0
        raise ValueError(f"model {model} returned {got}-d vectors, the store expects {dimensions}")
    usage = getattr(response, "usage", None)
    tokens = int(getattr(usage, "prompt_tokens", 0) or 0)
    try:
        cost = float(litellm.completion_cost(completion_response=response) or 0.0)
    except Exception:  # a model without a price: cost unknown, not an error
        cost = 0.0
    return EmbeddingBatch(
        vectors=vectors,
        model=model,
        input_tokens=tokens,
        cost_usd=cost,
        latency_ms=(time.perf_counter() - started) * 1e3,
    )


async def warm_up(*models: str) -> None:
    """Load in-process models before the service says it is ready.

    The local model takes seconds to load; without this the first request of each process pays
    for it and can run past its caller's timeout.
    """
    if any(m.startswith("local/") for m in models):
        import asyncio

        from agentbus.local_models.embedder import get_embedder

        await asyncio.to_thread(get_embedder)
