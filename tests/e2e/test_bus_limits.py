"""A JetStream limit reached (issue 21, "Limits reached"): a run the RUNS stream refuses is a
clear 503 with a reason code and Retry-After, on the native API and the LangGraph API alike;
nothing of it is left running or queued, and its thread takes the next run as soon as the stream
accepts again. The refusal is real: RUNS' maximum message size is lowered below any run's size,
as a full stream or a full disk refuses a publish.
"""

from __future__ import annotations

import dataclasses
import uuid
from typing import Any

import httpx
import nats
import pytest
from langgraph_sdk.client import LangGraphClient
from langgraph_sdk.errors import APIStatusError

from agentbus.contracts.streams import RUNS
from agentbus.runtime.platform import Platform

pytestmark = pytest.mark.e2e


def refused(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.json()["reason"] == "runs_unavailable", response.text
    assert response.headers["retry-after"] == "5"


async def test_a_refused_run_is_a_503_and_its_thread_takes_the_next_run(
    platform: Platform, http: httpx.AsyncClient, client: LangGraphClient
) -> None:
    native_thread = uuid.uuid4().hex
    created = await http.post("/api/v1/threads", json={"thread_id": native_thread})
    assert created.status_code == 201, created.text
    lg_thread = (await client.threads.create())["thread_id"]
    ask = {"message": "hello", "thread_id": native_thread, "assistant_id": "echo"}
    messages: dict[str, Any] = {"messages": [{"role": "user", "content": "hello"}]}
    nc = await nats.connect(platform.engines.urls()["nats"])
    js = nc.jetstream()
    config = (await js.stream_info(RUNS.name)).config
    await js.update_stream(dataclasses.replace(config, max_msg_size=64))
    try:
        refused(await http.post("/api/v1/chat", json=ask))
        refused(await http.post("/api/v1/chat/stream", json=ask))
        with pytest.raises(APIStatusError) as lg:
            await client.runs.create(lg_thread, "echo", input=messages)
        refused(lg.value.response)
        # The refused runs are over, not pending: nothing will run them later.
        thread = (await http.get(f"/api/v1/threads/{native_thread}")).json()
        assert thread["status"] == "error", thread
        listed = await client.runs.list(lg_thread)
        assert all(r["status"] not in ("pending", "running") for r in listed), listed
    finally:
        await js.update_stream(config)
        await nc.close()
    # Nothing refused is left holding either thread.
    again = await http.post("/api/v1/chat", json=ask)
    assert again.status_code == 200 and again.json()["status"] == "success", again.text
    done = await client.runs.wait(lg_thread, "echo", input=messages)
    assert isinstance(done, dict) and done["messages"], done
