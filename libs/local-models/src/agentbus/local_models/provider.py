"""The LiteLLM custom provider `local/...`: models that run in this process with no key.

- `local/all-MiniLM-L6-v2` serves embeddings.
- `local/extractive` serves chat completions, streamed or not, with tool calls: tool choice by
  embedding similarity and extractive answers with citations (the algorithm is documented in
  `extractive`).

Requests for any other local model name fail with a clear error (404) instead of silently
answering from the wrong model.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Callable, Iterator
from functools import lru_cache
from typing import Any

# As in `llm`: importing litellm must not fetch the model cost map from the network, whichever
# module is imported first.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from litellm.llms.custom_llm import CustomLLM, CustomLLMError
from litellm.types.utils import (
    ChatCompletionMessageToolCall,
    EmbeddingResponse,
    GenericStreamingChunk,
    Message,
    ModelResponse,
    Usage,
)

from .embedder import MODEL_NAME, get_embedder
from .extractive import MODEL_NAME as CHAT_MODEL
from .extractive import ExtractiveChat, Reply, stream_pieces
from .messages import LocalChatError


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


def _check_chat_model(model: str) -> None:
    name = model.removeprefix("local/")
    if name == CHAT_MODEL:
        return
    hint = " (an embedding model)" if name == MODEL_NAME else ""
    raise CustomLLMError(  # type: ignore[no-untyped-call]
        status_code=404,
        message=f"unknown local chat model 'local/{name}'{hint}; have local/{CHAT_MODEL}",
    )


@lru_cache(maxsize=1)
def get_chat() -> ExtractiveChat:
    """One model per process; its tool-text vector cache is shared by all calls."""
    return ExtractiveChat(get_embedder)


def _usage(reply: Reply) -> Usage:
    return Usage(
        prompt_tokens=reply.prompt_tokens,
        completion_tokens=reply.completion_tokens,
        total_tokens=reply.prompt_tokens + reply.completion_tokens,
    )


def _reply(model: str, messages: list[Any], optional_params: dict[str, Any]) -> Reply:
    _check_chat_model(model)
    try:
        return get_chat().reply(
            messages,
            tools=optional_params.get("tools"),
            tool_choice=optional_params.get("tool_choice"),
            parallel_tool_calls=optional_params.get("parallel_tool_calls"),
        )
    except LocalChatError as exc:
        raise CustomLLMError(  # type: ignore[no-untyped-call]
            status_code=exc.status_code, message=exc.message
        ) from None


def _fill(model_response: ModelResponse, reply: Reply) -> ModelResponse:
    tool_calls = [
        ChatCompletionMessageToolCall(**call.openai()) for call in reply.tool_calls
    ] or None
    model_response.choices[0].message = Message(
        content=reply.content, role="assistant", tool_calls=tool_calls
    )
    model_response.choices[0].finish_reason = reply.finish_reason
    model_response.model = f"local/{CHAT_MODEL}"
    model_response.created = int(time.time())
    model_response.usage = _usage(reply)  # type: ignore[attr-defined]
    return model_response


def _chunks(reply: Reply) -> Iterator[GenericStreamingChunk]:
    """The reply as LiteLLM generic chunks: tool calls, or words; then finish reason and usage."""
    for index, call in enumerate(reply.tool_calls):
        yield GenericStreamingChunk(
            text="",
            tool_use=call.openai(index),  # type: ignore[typeddict-item]
            is_finished=False,
            finish_reason="",
            usage=None,
            index=0,
        )
    for piece in stream_pieces(reply.content or ""):
        yield GenericStreamingChunk(
            text=piece, tool_use=None, is_finished=False, finish_reason="", usage=None, index=0
        )
    yield GenericStreamingChunk(
        text="",
        tool_use=None,
        is_finished=True,
        finish_reason=reply.finish_reason,
        usage={
            "prompt_tokens": reply.prompt_tokens,
            "completion_tokens": reply.completion_tokens,
            "total_tokens": reply.prompt_tokens + reply.completion_tokens,
        },
        index=0,
    )


async def _astream(
    model: str, messages: list[Any], optional_params: dict[str, Any]
) -> AsyncIterator[GenericStreamingChunk]:
    reply = await asyncio.to_thread(_reply, model, messages, optional_params)
    for chunk in _chunks(reply):
        yield chunk
        await asyncio.sleep(0)  # let a cancelled run stop between words


class LocalProvider(CustomLLM):
    # -- chat: local/extractive ----------------------------------------------------------------

    def completion(
        self,
        model: str,
        messages: list[Any],
        api_base: str,
        custom_prompt_dict: dict[str, Any],
        model_response: ModelResponse,
        print_verbose: Callable[..., Any],
        encoding: Any,
        api_key: Any,
        logging_obj: Any,
        optional_params: dict[str, Any],
        *args: Any,
        **kwargs: Any,
    ) -> ModelResponse:
        return _fill(model_response, _reply(model, messages, optional_params))

    async def acompletion(
        self,
        model: str,
        messages: list[Any],
        api_base: str,
        custom_prompt_dict: dict[str, Any],
        model_response: ModelResponse,
        print_verbose: Callable[..., Any],
        encoding: Any,
        api_key: Any,
        logging_obj: Any,
        optional_params: dict[str, Any],
        *args: Any,
        **kwargs: Any,
    ) -> ModelResponse:
        # MiniLM runs on the CPU: keep the event loop free for the bus while it works.
        reply = await asyncio.to_thread(_reply, model, messages, optional_params)
        return _fill(model_response, reply)

    def streaming(
        self,
        model: str,
        messages: list[Any],
        api_base: str,
        custom_prompt_dict: dict[str, Any],
        model_response: ModelResponse,
        print_verbose: Callable[..., Any],
        encoding: Any,
        api_key: Any,
        logging_obj: Any,
        optional_params: dict[str, Any],
        *args: Any,
        **kwargs: Any,
    ) -> Iterator[GenericStreamingChunk]:
        yield from _chunks(_reply(model, messages, optional_params))

    # LiteLLM declares this as a coroutine, but routes its result straight to CustomStreamWrapper,
    # which iterates it: an async iterator is what it needs. A plain method that checks the model
    # first, so an unknown model fails inside `acompletion` itself, where the Router's retries
    # and fallbacks see it (an error raised later, mid-stream, would bypass them).
    def astreaming(  # type: ignore[override]
        self,
        model: str,
        messages: list[Any],
        api_base: str,
        custom_prompt_dict: dict[str, Any],
        model_response: ModelResponse,
        print_verbose: Callable[..., Any],
        encoding: Any,
        api_key: Any,
        logging_obj: Any,
        optional_params: dict[str, Any],
        *args: Any,
        **kwargs: Any,
    ) -> AsyncIterator[GenericStreamingChunk]:
        _check_chat_model(model)
        return _astream(model, messages, optional_params)

    # -- embeddings: local/all-MiniLM-L6-v2 ----------------------------------------------------

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
