"""The model layer over real components: the `llm` alias falling back from a real failing
endpoint, the GenAI span attributes Langfuse and LangSmith read, and the response cache over the
real NATS KV (exact) and the local embedding model (semantic), inside real runs."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import nats
import pytest
import yaml  # type: ignore[import-untyped]
from nats.aio.client import Client as NatsClient
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from agentbus.contracts import LlmUsage, RunEvent, RunRequested, new_id
from agentbus.contracts import subjects as s
from agentbus.orchestrator.app import build
from agentbus.orchestrator.model_cache import CacheConfig, open_cache
from agentbus.orchestrator.model_calls import (
    DEFAULT_CONFIG,
    ModelConfigError,
    ModelScope,
    attach_cache,
    complete,
    load_router,
    model_scope,
)
from agentbus.orchestrator.model_spans import capture_content
from agentbus.orchestrator.settings import OrchestratorSettings
from agentbus.runtime.provisioning import provision
from agentbus.runtime.testing import memory_spans, running

ASK_GRAPHS = Path(__file__).parent / "model_graph" / "langgraph.json"


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    yield memory_spans()


def chat_spans(exporter: InMemorySpanExporter) -> list[ReadableSpan]:
    return [sp for sp in exporter.get_finished_spans() if sp.name.startswith("chat ")]


class Overloaded(BaseHTTPRequestHandler):
    """An OpenAI-compatible server that is down: every chat completion is a 503."""

    hits: list[str] = []

    def do_POST(self) -> None:
        self.hits.append(self.path)
        body = json.dumps({"error": {"message": "overloaded", "type": "server_error"}}).encode()
        self.send_response(503)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def failing_endpoint() -> Iterator[tuple[str, list[str]]]:
    hits: list[str] = []
    handler = type("Handler", (Overloaded,), {"hits": hits})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1", hits
    finally:
        server.shutdown()
        server.server_close()


def write_config(tmp_path: Path, data: dict[str, Any]) -> Path:
    path = tmp_path / "models.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


async def test_llm_alias_falls_back_when_its_deployment_fails(
    tmp_path: Path, failing_endpoint: tuple[str, list[str]], spans: InMemorySpanExporter
) -> None:
    url, hits = failing_endpoint
    router = load_router(
        write_config(
            tmp_path,
            {
                "model_list": [
                    {
                        "model_name": "llm",
                        "litellm_params": {
                            "model": "openai/primary",
                            "api_base": url,
                            "api_key": "not-a-key",
                        },
                    },
                    {"model_name": "fast", "litellm_params": {"model": "local/extractive"}},
                ],
                "router_settings": {
                    "routing_strategy": "latency-based-routing",
                    "num_retries": 0,
                    "fallbacks": [{"llm": ["fast"]}],
                },
            },
        )
    )
    call = await complete(router, "llm", [{"role": "user", "content": "who owns payments?"}])
    # The failing deployment was really called, then the fallback group answered.
    assert hits and all(path.endswith("/chat/completions") for path in hits)
    assert call.fallback is True and call.served_group == "fast"
    assert call.model == "local/extractive" and call.content
    (span,) = chat_spans(spans)
    attrs = span.attributes or {}
    assert attrs["gen_ai.request.model"] == "llm"
    assert attrs["agentbus.llm.fallback"] is True
    assert attrs["agentbus.llm.served_group"] == "fast"


async def test_the_packaged_config_serves_llm_with_its_strategy_and_chain() -> None:
    router = load_router()
    settings = router.settings()
    assert settings.routing_strategy == "latency-based-routing"
    assert {"llm": ["fast", "deep"]} in settings.fallbacks
    call = await complete(router, "llm", [{"role": "user", "content": "hello"}])
    assert call.served_group == "llm" and call.fallback is False and call.content


async def test_model_spans_carry_what_langfuse_and_langsmith_read(
    spans: InMemorySpanExporter,
) -> None:
    router = load_router()
    messages = [
        {"role": "system", "content": "Answer briefly."},
        {"role": "user", "content": "What is a rollback?"},
    ]
    with model_scope(ModelScope("t-spans", "thread-9", "run-9", "agent")):
        call = await complete(router, "fast", messages)
    (span,) = chat_spans(spans)
    attrs = dict(span.attributes or {})
    # OpenTelemetry GenAI conventions (both tools).
    assert attrs["gen_ai.operation.name"] == "chat"
    assert attrs["gen_ai.system"] == attrs["gen_ai.provider.name"] == "local"
    assert attrs["gen_ai.request.model"] == "fast"
    assert attrs["gen_ai.response.model"] == "local/extractive"
    assert attrs["gen_ai.usage.input_tokens"] == call.input_tokens > 0
    assert attrs["gen_ai.usage.output_tokens"] == call.output_tokens > 0
    # LangSmith: run type, messages, session, metadata.
    assert attrs["langsmith.span.kind"] == "llm"
    assert attrs["gen_ai.prompt.0.role"] == "system"
    assert attrs["gen_ai.prompt.1.content"] == "What is a rollback?"
    assert attrs["gen_ai.completion.0.role"] == "assistant"
    assert attrs["gen_ai.completion.0.content"] == call.content
    assert attrs["langsmith.trace.session_id"] == "thread-9"
    assert attrs["langsmith.metadata.run_id"] == "run-9"
    # Langfuse: a generation with input, output, model, usage, cost and session.
    assert attrs["langfuse.observation.type"] == "generation"
    assert (
        json.loads(str(attrs["langfuse.observation.input"]))[1]["content"] == messages[1]["content"]
    )
    assert json.loads(str(attrs["langfuse.observation.output"]))["content"] == call.content
    assert attrs["langfuse.observation.model.name"] == "local/extractive"
    usage = json.loads(str(attrs["langfuse.observation.usage_details"]))
    assert usage == {"input": call.input_tokens, "output": call.output_tokens}
    assert json.loads(str(attrs["langfuse.observation.cost_details"])) == {"total": 0.0}
    assert attrs["session.id"] == "thread-9"
    assert "langfuse.observation.completion_start_time" in attrs
    assert "agentbus.llm.cache_hit" not in attrs


async def test_content_capture_can_be_turned_off(spans: InMemorySpanExporter) -> None:
    capture_content(False)
    try:
        await complete(load_router(), "fast", [{"role": "user", "content": "secret plans"}])
    finally:
        capture_content(True)
    (span,) = chat_spans(spans)
    attrs = span.attributes or {}
    assert not [k for k in attrs if k.startswith("gen_ai.prompt") or k.endswith(".input")]
    assert not [v for v in attrs.values() if "secret plans" in str(v)]
    assert attrs["gen_ai.usage.input_tokens"] > 0  # usage stays


@pytest.fixture
async def cached_router(nats_url: str) -> AsyncIterator[Any]:
    """The packaged models with an exact and semantic cache over the real `llm_cache` bucket."""
    nc = await nats.connect(nats_url)
    await provision(nc.jetstream())
    router = load_router()
    config = CacheConfig(mode="both", ttl_s=600, similarity_threshold=0.9)
    attach_cache(router, await open_cache(nc.jetstream(), config, router))
    yield router
    await nc.close()


async def test_exact_and_semantic_hits_stay_within_the_tenant(cached_router: Any) -> None:
    tenant, other = f"t-{uuid.uuid4().hex[:8]}", f"t-{uuid.uuid4().hex[:8]}"
    question = [{"role": "user", "content": "Who is on call for the payments service?"}]
    # No run scope: never cached (no tenant to key it by).
    assert (await complete(cached_router, "fast", question)).cache_hit is None
    assert (await complete(cached_router, "fast", question)).cache_hit is None
    with model_scope(ModelScope(tenant)):
        first = await complete(cached_router, "fast", question)
        tokens: list[str] = []

        async def sink(text: str) -> None:
            tokens.append(text)

        again = await complete(cached_router, "fast", question, on_token=sink)
        close = await complete(
            cached_router,
            "fast",
            [{"role": "user", "content": "who is on call for the payments service"}],
        )
        unrelated = await complete(
            cached_router, "fast", [{"role": "user", "content": "Bake sourdough at what heat?"}]
        )
        # Another group is another partition.
        deep = await complete(cached_router, "deep", question)
    with model_scope(ModelScope(other)):
        elsewhere = await complete(cached_router, "fast", question)
    assert first.cache_hit is None
    assert again.cache_hit == "exact" and again.content == first.content
    assert "".join(tokens) == first.content  # the client still receives the answer
    assert again.cost_usd == 0.0 and again.input_tokens == first.input_tokens
    assert close.cache_hit == "semantic" and close.cache_similarity is not None
    assert close.cache_similarity >= 0.9 and close.content == first.content
    assert unrelated.cache_hit is None
    assert deep.cache_hit is None
    assert elsewhere.cache_hit is None


async def test_expired_entries_are_misses(nats_url: str) -> None:
    nc = await nats.connect(nats_url)
    try:
        await provision(nc.jetstream())
        router = load_router()
        # Expired as soon as written (the bucket itself keeps entries a day).
        attach_cache(router, await open_cache(nc.jetstream(), CacheConfig(ttl_s=1e-6), router))
        question = [{"role": "user", "content": "What changed in the last deploy?"}]
        with model_scope(ModelScope(f"t-{uuid.uuid4().hex[:8]}")):
            await complete(router, "fast", question)
            assert (await complete(router, "fast", question)).cache_hit is None
    finally:
        await nc.close()


@pytest.mark.parametrize(
    ("params", "error"),
    [
        ({"mode": "fuzzy"}, "mode"),
        ({"ttl": 0}, "ttl"),
        ({"similarity_threshold": 1.5}, "similarity_threshold"),
        ({"namespace": "x"}, "unknown namespace"),
    ],
)
def test_bad_cache_settings_are_named(tmp_path: Path, params: dict[str, Any], error: str) -> None:
    path = write_config(
        tmp_path,
        {
            "model_list": [{"model_name": "fast", "litellm_params": {"model": "local/extractive"}}],
            "litellm_settings": {"cache": True, "cache_params": params},
        },
    )
    with pytest.raises(ModelConfigError, match=error):
        load_router(path)


@pytest.fixture
async def cached_orchestrator(
    service_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[NatsClient]:
    packaged = yaml.safe_load(DEFAULT_CONFIG.read_text())
    packaged["litellm_settings"] = {"cache": True, "cache_params": {"mode": "exact", "ttl": 600}}
    monkeypatch.setenv("AGENTBUS_MODELS_CONFIG", str(write_config(tmp_path, packaged)))
    monkeypatch.setenv("AGENTBUS_LANGGRAPH_CONFIG", str(ASK_GRAPHS))
    service = build(OrchestratorSettings())
    # Start-up loads the local models: slow on a busy machine.
    async with running(service, timeout=120):
        nc = await nats.connect(service_env["AGENTBUS_NATS_URL"])
        yield nc
        await nc.close()


async def run_ask(nc: NatsClient, tenant: str, question: str) -> tuple[list[RunEvent], LlmUsage]:
    """Submits one run of `ask`; its events and the LlmUsage it published."""
    run = RunRequested(
        tenant_id=tenant,
        run_id=new_id(),
        thread_id=new_id(),
        assistant_id="ask",
        input={"messages": [{"role": "user", "content": question}]},
    )
    usage_sub = await nc.subscribe(s.TELEMETRY_LLM_USAGE)
    events_sub = await nc.subscribe(s.run_events(run.run_id))
    await nc.jetstream().publish(
        s.RUNS_SUBMIT, run.model_dump_json().encode(), headers={"Nats-Msg-Id": run.run_id}
    )
    got: list[RunEvent] = []
    try:
        while not got or got[-1].type != "end":
            got.append(RunEvent.model_validate_json((await events_sub.next_msg(timeout=60)).data))
        while True:
            usage = LlmUsage.model_validate_json((await usage_sub.next_msg(timeout=10)).data)
            if usage.run_id == run.run_id:
                return got, usage
    finally:
        await usage_sub.unsubscribe()
        await events_sub.unsubscribe()


async def test_a_cache_hit_shows_in_the_runs_events_usage_and_trace(
    cached_orchestrator: NatsClient, spans: InMemorySpanExporter
) -> None:
    tenant, other = f"t-{uuid.uuid4().hex[:8]}", f"t-{uuid.uuid4().hex[:8]}"
    question = "How often do we deploy the billing service?"
    first_events, first_usage = await run_ask(cached_orchestrator, tenant, question)
    second_events, second_usage = await run_ask(cached_orchestrator, tenant, question)
    other_events, other_usage = await run_ask(cached_orchestrator, other, question)

    def selection(events: list[RunEvent]) -> dict[str, Any]:
        (event,) = [e for e in events if e.type == "model_selection"]
        return event.data

    def answer(events: list[RunEvent]) -> str:
        return "".join(e.data["text"] for e in events if e.type == "token")

    assert selection(first_events)["cache_hit"] is False and first_usage.cache_hit is False
    hit = selection(second_events)
    assert hit["cache_hit"] is True and hit["cache"] == "exact"
    assert second_usage.cache_hit is True and second_usage.cost_usd == 0.0
    assert answer(second_events) == answer(first_events) != ""
    assert second_events[-1].status == "success"
    # The same question from another tenant calls the model.
    assert selection(other_events)["cache_hit"] is False and other_usage.cache_hit is False
    # The trace: only the second run's model span is marked (other runs of the session that an
    # orchestrator here may pick up from the queue are left out by run id).
    marks = {
        str((sp.attributes or {}).get("langsmith.metadata.run_id")): (sp.attributes or {}).get(
            "agentbus.llm.cache_hit"
        )
        for sp in chat_spans(spans)
    }
    runs = [first_usage.run_id, second_usage.run_id, other_usage.run_id]
    assert [marks[str(run)] for run in runs] == [None, "exact", None]
