"""Model calls through LiteLLM's Router: groups, fallbacks, retries, usage and cost per call.

The graph asks for a group (`fast`, `deep`); the Router picks a deployment and falls back per the
config. Every call is streamed, so tokens reach the client as they come and time to first token
is measured; usage comes from the provider's final chunk when it sends one, else it is counted.
A configured response cache (model_cache.py) answers repeated prompts of a tenant without a call;
each call's span carries the GenAI attributes Langfuse and LangSmith read (model_spans.py).
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml  # type: ignore[import-untyped]
from opentelemetry.trace import SpanKind

from agentbus.runtime.llm.client import litellm
from agentbus.runtime.traces import tracer

from .model_cache import CacheConfig, CacheConfigError, CachedAnswer, ResponseCache
from .model_spans import annotate_request, annotate_response

# Package data, so an installed wheel (a container image) has it too; a path computed from the
# source tree pointed outside the wheel and silently gave a Router with no fallbacks.
DEFAULT_CONFIG = Path(__file__).resolve().parent / "models.yaml"


class ModelConfigError(ValueError):
    pass


def load_router(path: Path | None = None) -> Any:
    """A LiteLLM Router from a config file in LiteLLM's own format (default: the packaged one).

    A missing file is an error, named, never a silent fallback to some other Router.
    """
    source = path or DEFAULT_CONFIG
    try:
        config = yaml.safe_load(source.read_text())
    except FileNotFoundError:
        raise ModelConfigError(f"{source}: file not found") from None
    except (OSError, yaml.YAMLError) as exc:
        raise ModelConfigError(f"{source}: {exc}") from None
    if not isinstance(config, dict) or not isinstance(config.get("model_list"), list):
        raise ModelConfigError(f"{source}: needs a `model_list`")
    settings = dict(config.get("router_settings") or {})
    try:
        cache = CacheConfig.parse(dict(config.get("litellm_settings") or {}))
    except (CacheConfigError, TypeError, ValueError) as exc:
        raise ModelConfigError(f"{source}: {exc}") from None
    try:
        from litellm.router import Router

        router = Router(model_list=config["model_list"], **settings)
    except Exception as exc:
        raise ModelConfigError(f"{source}: {exc}") from None
    # Read by the service at start (open_cache needs its NATS connection).
    router.agentbus_cache_config = cache
    return router


def cache_config(router: Any) -> CacheConfig | None:
    return getattr(router, "agentbus_cache_config", None)


def attach_cache(router: Any, cache: ResponseCache | None) -> None:
    router.agentbus_cache = cache


@dataclass(frozen=True)
class ModelScope:
    """Who a model call is for: set by the runner around a run, read by `complete`.

    The cache needs the tenant (its keys hold it) and the traces the thread (a Langfuse session,
    a LangSmith session), without every graph passing them to every call.
    """

    tenant_id: str
    thread_id: str | None = None
    run_id: str | None = None
    assistant_id: str | None = None


_SCOPE: ContextVar[ModelScope | None] = ContextVar("agentbus_model_scope", default=None)


@contextmanager
def model_scope(scope: ModelScope) -> Iterator[None]:
    token = _SCOPE.set(scope)
    try:
        yield
    finally:
        _SCOPE.reset(token)


def current_scope() -> ModelScope | None:
    return _SCOPE.get()


@dataclass
class ModelCall:
    group: str
    model: str = ""
    provider: str = ""
    content: str = ""
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    cost_usd: float = 0.0
    latency_ms: float = 0.0
    ttft_ms: float | None = None
    fallback: bool = False
    # The group that served the call (another one when the Router fell back).
    served_group: str = ""
    # "exact" or "semantic" when the response cache answered (no model was called, cost 0).
    cache_hit: str | None = None
    cache_similarity: float | None = None


TokenSink = Callable[[str], Awaitable[None]]


async def complete(
    router: Any,
    group: str,
    messages: list[dict[str, Any]],
    *,
    tools: list[dict[str, Any]] | None = None,
    tool_choice: Any = None,
    on_token: TokenSink | None = None,
) -> ModelCall:
    """One streamed chat call through the Router; tokens go to `on_token` as they arrive.

    With a response cache and a run scope, a cached answer for the tenant is returned instead
    (its text sent to `on_token` at once), and a fresh answer is stored.
    """
    scope = current_scope()
    cache: ResponseCache | None = getattr(router, "agentbus_cache", None)
    # A span per call with the GenAI semantic conventions; the group is the requested model.
    with tracer().start_as_current_span(
        f"chat {group}",
        kind=SpanKind.CLIENT,
        attributes={
            "gen_ai.operation.name": "chat",
            "gen_ai.request.model": group,
            "gen_ai.request.stream": True,
        },
    ) as span:
        annotate_request(span, messages, tools, scope)
        vector: list[float] | None = None
        if cache is not None and scope is not None:
            started = time.perf_counter()
            cached, vector = await cache.lookup(
                scope.tenant_id, group, messages, tools, tool_choice
            )
            if cached is not None:
                call = _from_cache(group, cached, started)
                if on_token is not None and call.content:
                    await on_token(call.content)
                annotate_response(span, call)
                return call
        call = await _complete(router, group, messages, tools, tool_choice, on_token)
        if cache is not None and scope is not None and (call.content or call.tool_calls):
            answer = CachedAnswer(
                kind="exact",
                content=call.content,
                tool_calls=call.tool_calls,
                model=call.model,
                provider=call.provider,
                input_tokens=call.input_tokens,
                output_tokens=call.output_tokens,
            )
            await cache.store(scope.tenant_id, group, messages, tools, tool_choice, answer, vector)
        annotate_response(span, call)
        return call


def _from_cache(group: str, cached: CachedAnswer, started: float) -> ModelCall:
    elapsed = (time.perf_counter() - started) * 1e3
    return ModelCall(
        group=group,
        model=cached.model,
        provider=cached.provider,
        content=cached.content,
        tool_calls=cached.tool_calls,
        input_tokens=cached.input_tokens,
        output_tokens=cached.output_tokens,
        cost_usd=0.0,
        latency_ms=elapsed,
        ttft_ms=elapsed if cached.content else None,
        served_group=group,
        cache_hit=cached.kind,
        cache_similarity=round(cached.similarity, 4),
    )


async def _complete(
    router: Any,
    group: str,
    messages: list[dict[str, Any]],
    tools: list[dict[str, Any]] | None,
    tool_choice: Any,
    on_token: TokenSink | None,
) -> ModelCall:
    started = time.perf_counter()
    call = ModelCall(group=group)
    kwargs: dict[str, Any] = {"stream": True, "stream_options": {"include_usage": True}}
    if tools:
        kwargs["tools"] = tools
        if tool_choice is not None:
            kwargs["tool_choice"] = tool_choice
    stream = await router.acompletion(model=group, messages=messages, **kwargs)
    chunks: list[Any] = []
    partial_calls: dict[int, dict[str, Any]] = {}
    async for chunk in stream:
        chunks.append(chunk)
        if not call.model:
            call.model = str(getattr(chunk, "model", "") or "")
        choices = getattr(chunk, "choices", None) or []
        if choices:
            delta = choices[0].delta
            text = getattr(delta, "content", None)
            if text:
                if call.ttft_ms is None:
                    call.ttft_ms = (time.perf_counter() - started) * 1e3
                call.content += text
                if on_token is not None:
                    await on_token(text)
            for tc in getattr(delta, "tool_calls", None) or []:
                index = getattr(tc, "index", 0) or 0
                slot = partial_calls.setdefault(
                    index, {"id": "", "type": "function", "function": {"name": "", "arguments": ""}}
                )
                if getattr(tc, "id", None):
                    slot["id"] = tc.id
                fn = getattr(tc, "function", None)
                if fn is not None:
                    if getattr(fn, "name", None):
                        slot["function"]["name"] = fn.name
                    if getattr(fn, "arguments", None):
                        slot["function"]["arguments"] += fn.arguments
        usage = getattr(chunk, "usage", None)
        if usage:
            call.input_tokens = int(getattr(usage, "prompt_tokens", 0) or call.input_tokens)
            call.output_tokens = int(getattr(usage, "completion_tokens", 0) or call.output_tokens)
            details = getattr(usage, "prompt_tokens_details", None)
            call.cached_tokens = int(getattr(details, "cached_tokens", 0) or 0) if details else 0
    call.tool_calls = [partial_calls[i] for i in sorted(partial_calls)]
    call.latency_ms = (time.perf_counter() - started) * 1e3
    hidden = getattr(stream, "_hidden_params", {}) or {}
    deployment = str(hidden.get("litellm_model_name") or hidden.get("model") or call.model)
    call.model = deployment or call.model
    call.provider = call.model.split("/", 1)[0] if "/" in call.model else "openai"
    # The Router says which group served the call and how many fallbacks it tried; without
    # those headers (older LiteLLM), a deployment outside the group asked for means it fell back.
    headers = hidden.get("additional_headers") or {}
    served = str(headers.get("x-litellm-model-group") or "")
    attempted = int(headers.get("x-litellm-attempted-fallbacks") or 0)
    if served:
        call.served_group = served
        call.fallback = served != group or attempted > 0
    else:
        own = {
            str(m["litellm_params"]["model"]) for m in router.model_list if m["model_name"] == group
        }
        call.fallback = bool(call.model) and call.model not in own
        call.served_group = group if not call.fallback else ""
    if not call.output_tokens and (call.content or call.tool_calls):
        # The provider sent no usage: count what we received so streamed calls are never zero.
        call.output_tokens = litellm.token_counter(
            model=call.model, text=call.content + json.dumps(call.tool_calls)
        )
        call.input_tokens = call.input_tokens or litellm.token_counter(
            model=call.model, messages=messages
        )
    try:
        rebuilt = litellm.stream_chunk_builder(chunks, messages=messages)
        call.cost_usd = float(litellm.completion_cost(completion_response=rebuilt) or 0.0)
    except Exception:  # no price known for this model: cost stays 0, not an error
        call.cost_usd = 0.0
    return call
