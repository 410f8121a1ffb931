"""The OpenAI-compatible API with the official `openai` client, unmodified, and LiteLLM's
`openai/` provider, against the real platform: models, completions streamed and not, usage,
threads, citations, errors in OpenAI's shape, and a dropped stream that loses no run."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator

import httpx
import openai
import pytest
from openai import AsyncOpenAI

from agentbus.contracts import new_id
from agentbus.runtime.platform import Platform

pytestmark = pytest.mark.e2e

DOC = (
    "Beekeeping notes. The rooftop hives are inspected every second Thursday. "
    "Honey is harvested from the rooftop hives in late August."
)


def dev_key(platform: Platform) -> str:
    return (platform.data_dir / "dev-api-key").read_text().strip()


@pytest.fixture
async def client(platform: Platform) -> AsyncIterator[AsyncOpenAI]:
    sdk = AsyncOpenAI(
        base_url=f"{platform.gateway_url}/v1", api_key=dev_key(platform), timeout=120, max_retries=0
    )
    yield sdk
    await sdk.close()


@pytest.fixture
async def http(platform: Platform) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=platform.gateway_url, headers={"x-api-key": dev_key(platform)}, timeout=120
    ) as c:
        yield c


async def test_models_are_the_assistants(client: AsyncOpenAI) -> None:
    models = [m.id async for m in client.models.list()]
    assert {"agent", "echo", "steps"} <= set(models)
    assert (await client.models.retrieve("echo")).owned_by == "agentbus"
    with pytest.raises(openai.NotFoundError) as missing:
        await client.models.retrieve("nope")
    assert missing.value.code == "model_not_found"


async def test_completion_without_stream_runs_statelessly(
    client: AsyncOpenAI, http: httpx.AsyncClient
) -> None:
    raw = await client.chat.completions.with_raw_response.create(
        model="echo", messages=[{"role": "user", "content": "one two three"}]
    )
    completion = raw.parse()
    assert completion.object == "chat.completion" and completion.model == "echo"
    assert completion.choices[0].message.content == "one two three"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None and completion.usage.total_tokens == 0  # echo: no model
    run_id = raw.headers["x-agentbus-run-id"]
    assert completion.id == f"chatcmpl-{run_id}"
    # Each stateless request gets a thread of its own.
    again = await client.chat.completions.with_raw_response.create(
        model="echo", messages=[{"role": "user", "content": "four"}]
    )
    assert again.headers["x-agentbus-thread-id"] != raw.headers["x-agentbus-thread-id"]


async def test_thread_header_keeps_the_conversation(
    client: AsyncOpenAI, http: httpx.AsyncClient
) -> None:
    thread = new_id()
    headers = {"X-Agentbus-Thread-Id": thread}
    for text in ("first turn", "second turn"):
        done = await client.chat.completions.create(
            model="echo",
            # The whole conversation, as clients send it: on a thread only the last user message
            # is run, the thread holds the rest.
            messages=[
                {"role": "user", "content": "first turn"},
                {"role": "assistant", "content": "first turn"},
                {"role": "user", "content": text},
            ][: 1 if text == "first turn" else 3],
            extra_headers=headers,
        )
        assert done.choices[0].message.content == text
    messages = (await http.get(f"/api/v1/threads/{thread}/messages")).json()["messages"]
    assert [m["content"] for m in messages] == ["first turn"] * 2 + ["second turn"] * 2


async def test_stream_with_usage_and_citations_from_the_agent(
    client: AsyncOpenAI, http: httpx.AsyncClient
) -> None:
    response = await http.post(
        "/api/v1/documents",
        files={"file": ("bees.txt", DOC.encode(), "text/plain")},
        data={"title": "Beekeeping notes"},
    )
    assert response.status_code == 202, response.text
    doc = response.json()
    async with http.stream("GET", doc["events"]) as events:
        assert "event: indexed" in (await events.aread()).decode()

    stream = await client.chat.completions.create(
        model="agent",
        messages=[{"role": "user", "content": "When are the rooftop hives inspected?"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "thursday" in text.lower()
    finishing = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(finishing) == 1 and finishing[0].choices[0].finish_reason == "stop"
    # Citations ride on the closing chunk, an extra field strict clients ignore.
    citations = (finishing[0].model_extra or {})["citations"]
    assert any(c["document_id"] == doc["document_id"] for c in citations)
    # include_usage: every chunk has usage null but the last, which has no choices.
    assert all(c.usage is None for c in chunks[:-1])
    usage = chunks[-1].usage
    assert chunks[-1].choices == [] and usage is not None
    assert usage.prompt_tokens > 0 and usage.completion_tokens > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


async def test_errors_come_in_openai_shape(platform: Platform, client: AsyncOpenAI) -> None:
    with pytest.raises(openai.NotFoundError):
        await client.chat.completions.create(
            model="nope", messages=[{"role": "user", "content": "hi"}]
        )
    with pytest.raises(openai.BadRequestError) as no_user:
        await client.chat.completions.create(
            model="echo", messages=[{"role": "system", "content": "be brief"}]
        )
    assert no_user.value.param == "messages"
    with pytest.raises(openai.BadRequestError) as bad_header:
        await client.chat.completions.create(
            model="echo",
            messages=[{"role": "user", "content": "hi"}],
            extra_headers={"X-Agentbus-Thread-Id": "no/slashes"},
        )
    assert "X-Agentbus-Thread-Id" in bad_header.value.message
    with pytest.raises(openai.BadRequestError) as invalid:
        await client.chat.completions.create(model="echo", messages=[])
    assert invalid.value.param == "messages"
    wrong_key = AsyncOpenAI(
        base_url=f"{platform.gateway_url}/v1", api_key="ab_wrong", max_retries=0
    )
    with pytest.raises(openai.AuthenticationError) as denied:
        await wrong_key.models.list()
    await wrong_key.close()
    assert denied.value.code == "invalid_api_key"
    body = denied.value.body
    assert isinstance(body, dict) and set(body) == {"message", "type", "param", "code"}


async def test_dropped_stream_loses_no_run(http: httpx.AsyncClient) -> None:
    async with http.stream(
        "POST",
        "/v1/chat/completions",
        json={"model": "echo", "stream": True, "messages": [{"role": "user", "content": "a b c"}]},
    ) as response:
        assert response.status_code == 200
        run_id = response.headers["x-agentbus-run-id"]
        async for line in response.aiter_lines():
            if line.startswith("data: "):
                assert json.loads(line[6:])["choices"][0]["delta"]["role"] == "assistant"
                break  # the client goes away after the first chunk
    async with http.stream("GET", f"/api/v1/runs/{run_id}/stream") as replay:
        body = (await replay.aread()).decode()
    assert "event: stream_end" in body and '"status":"success"' in body


async def test_litellm_openai_provider(platform: Platform) -> None:
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm

    common = {
        "model": "openai/echo",
        "api_base": f"{platform.gateway_url}/v1",
        "api_key": dev_key(platform),
        "messages": [{"role": "user", "content": "litellm says hello"}],
    }
    whole = await litellm.acompletion(**common)
    assert whole.choices[0].message.content == "litellm says hello"
    stream = await litellm.acompletion(**common, stream=True)
    parts = [chunk.choices[0].delta.content or "" async for chunk in stream]
    assert "".join(parts).strip() == "litellm says hello"
