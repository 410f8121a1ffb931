"""The attributes of a model call's span that trace tools read through their OTLP endpoints.

Langfuse (`/api/public/otel`) and LangSmith (`/otel`) both take OTLP spans and map attributes
to their own fields; which ones is in their docs ("Property mapping" for Langfuse, "Supported
OpenTelemetry attribute mapping" for LangSmith). We set:

- OpenTelemetry GenAI conventions (both read them): `gen_ai.operation.name`, `gen_ai.system`
  and `gen_ai.provider.name`, `gen_ai.request.model` (the group asked for),
  `gen_ai.response.model` (the deployment that answered), `gen_ai.usage.input_tokens`,
  `gen_ai.usage.output_tokens`; messages as `gen_ai.prompt.{n}.role|content` and
  `gen_ai.completion.0.role|content` (LangSmith's inputs/outputs messages).
- Langfuse: `langfuse.observation.type` = generation, `langfuse.observation.input|output`
  (JSON), `langfuse.observation.model.name`, `langfuse.observation.usage_details` and
  `cost_details` (JSON), `langfuse.observation.completion_start_time`, `session.id` (the thread),
  `langfuse.observation.metadata.*`.
- LangSmith: `langsmith.span.kind` = llm, `langsmith.trace.session_id` (the thread),
  `langsmith.metadata.*`.
- Ours: `agentbus.llm.cost_usd`, `agentbus.llm.fallback`, `agentbus.llm.served_group`,
  `agentbus.llm.ttft_ms`, `agentbus.llm.cache_hit` (exact/semantic, absent on a miss).

Prompt and answer text are recorded unless `AGENTBUS_TRACE_MODEL_CONTENT=false` (then only sizes
and usage), each message cut at `MAX_CHARS`.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from typing import TYPE_CHECKING, Any

from opentelemetry.trace import Span

if TYPE_CHECKING:
    from .model_calls import ModelCall, ModelScope

MAX_CHARS = 4000
_capture = {"content": True}


def capture_content(enabled: bool) -> None:
    """Whether prompts and answers go into spans (the orchestrator's setting, at start)."""
    _capture["content"] = enabled


def _text(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text[:MAX_CHARS]


def annotate_request(
    span: Span,
    messages: list[dict[str, Any]],
    tools: list[dict[str, Any]] | None,
    scope: ModelScope | None,
) -> None:
    attrs: dict[str, Any] = {
        "langfuse.observation.type": "generation",
        "langsmith.span.kind": "llm",
        "gen_ai.request.message_count": len(messages),
    }
    if tools:
        attrs["langsmith.metadata.tools"] = ",".join(
            str(t.get("function", {}).get("name", "")) for t in tools
        )
    if scope is not None:
        meta = {
            "run_id": scope.run_id,
            "assistant_id": scope.assistant_id,
            "tenant_id": scope.tenant_id,
        }
        for key, value in meta.items():
            if value:
                attrs[f"langfuse.observation.metadata.{key}"] = value
                attrs[f"langsmith.metadata.{key}"] = value
        if scope.thread_id:
            attrs["session.id"] = scope.thread_id
            attrs["langsmith.trace.session_id"] = scope.thread_id
    if _capture["content"]:
        for i, m in enumerate(messages):
            attrs[f"gen_ai.prompt.{i}.role"] = str(m.get("role", ""))
            attrs[f"gen_ai.prompt.{i}.content"] = _text(m.get("content") or "")
        attrs["langfuse.observation.input"] = json.dumps(
            [{"role": m.get("role"), "content": _text(m.get("content") or "")} for m in messages]
        )
    span.set_attributes(attrs)


def annotate_response(span: Span, call: ModelCall) -> None:
    provider = call.provider or "unknown"
    attrs: dict[str, Any] = {
        "gen_ai.system": provider,
        "gen_ai.provider.name": provider,
        "gen_ai.response.model": call.model,
        "gen_ai.usage.input_tokens": call.input_tokens,
        "gen_ai.usage.output_tokens": call.output_tokens,
        "langfuse.observation.model.name": call.model,
        "langfuse.observation.usage_details": json.dumps(
            {"input": call.input_tokens, "output": call.output_tokens}
        ),
        "langfuse.observation.cost_details": json.dumps({"total": call.cost_usd}),
        "agentbus.llm.cost_usd": call.cost_usd,
        "agentbus.llm.fallback": call.fallback,
        "langsmith.metadata.ls_provider": provider,
        "langsmith.metadata.ls_model_name": call.model,
    }
    if call.served_group:
        attrs["agentbus.llm.served_group"] = call.served_group
    if call.cached_tokens:
        attrs["gen_ai.usage.cache_read.input_tokens"] = call.cached_tokens
    if call.ttft_ms is not None:
        attrs["agentbus.llm.ttft_ms"] = round(call.ttft_ms, 3)
        first = time.time() - max(0.0, call.latency_ms - call.ttft_ms) / 1e3
        attrs["langfuse.observation.completion_start_time"] = dt.datetime.fromtimestamp(
            first, dt.UTC
        ).isoformat()
    if call.tool_calls:
        attrs["gen_ai.response.finish_reasons"] = ["tool_calls"]
    if call.cache_hit:
        attrs["agentbus.llm.cache_hit"] = call.cache_hit
        attrs["langfuse.observation.metadata.cache_hit"] = call.cache_hit
        attrs["langsmith.metadata.cache_hit"] = call.cache_hit
        if call.cache_similarity is not None:
            attrs["agentbus.llm.cache_similarity"] = call.cache_similarity
    if _capture["content"]:
        output: dict[str, Any] = {"role": "assistant", "content": _text(call.content)}
        if call.tool_calls:
            output["tool_calls"] = call.tool_calls
        attrs["gen_ai.completion.0.role"] = "assistant"
        attrs["gen_ai.completion.0.content"] = _text(call.content or json.dumps(call.tool_calls))
        attrs["langfuse.observation.output"] = json.dumps(output, default=str)[: MAX_CHARS * 2]
    span.set_attributes(attrs)
