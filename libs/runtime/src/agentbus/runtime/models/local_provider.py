"""The LiteLLM custom provider `local/...`: models that run in this process with no key.

`local/all-MiniLM-L6-v2` serves embeddings. Requests for any other local model name fail with a
clear error instead of silently answering from the wrong model.
"""

from __future__ import annotations

import asyncio
from typing import Any

from litellm.llms.custom_llm import CustomLLM, CustomLLMError
from litellm.types.utils import EmbeddingResponse, Usage

from .local_embedder import MODEL_NAME, get_embedder


def _texts(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    raise CustomLLMError(  # type: ignore[no-untyped-call]
        status_code=400, message="local embeddings take a string or strings"
    )


def _check_model(model: str) -> None:
    if model.removeprefix("local/") != MODEL_NAME:
        raise CustomLLMError(  # type: ignore[no-untyped-call]
            status_code=404, message=f"unknown local embedding model {model!r}; have {MODEL_NAME}"
        )


class LocalProvider(CustomLLM):
    def embedding(
        self,
        model: str,
        input: list[Any],
        model_response: EmbeddingResponse,
        *args: Any,
        **kwargs: Any,
    ) -> EmbeddingResponse:
        _check_model(model)
        texts = _texts(input)
        embedder = get_embedder()
        vectors = embedder.encode(texts)
        tokens = embedder.count_tokens(texts)
        model_response.model = f"local/{MODEL_NAME}"
        model_response.object = "list"
        model_response.data = [
            {"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)
        ]
        model_response.usage = Usage(prompt_tokens=tokens, completion_tokens=0, total_tokens=tokens)
        return model_response

    async def aembedding(
        self,
        model: str,
        input: list[Any],
        model_response: EmbeddingResponse,
        *args: Any,
        **kwargs: Any,
    ) -> EmbeddingResponse:
        # The model runs on the CPU: keep the event loop free for the bus while it works.
        return await asyncio.to_thread(self.embedding, model, input, model_response)
