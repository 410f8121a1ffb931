"""Deleting a thread deletes its conversation (issue 13, point 11): re-creating the same thread
id must not bring the old checkpoints back."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import httpx
import pytest

from agentbus.runtime.platform import Platform

pytestmark = pytest.mark.e2e


@pytest.fixture
async def http(platform: Platform) -> AsyncIterator[httpx.AsyncClient]:
    key = (platform.data_dir / "dev-api-key").read_text().strip()
    async with httpx.AsyncClient(
        base_url=platform.gateway_url, headers={"x-api-key": key}, timeout=120
    ) as client:
        yield client


async def test_a_deleted_thread_comes_back_empty(http: httpx.AsyncClient) -> None:
    thread = str(uuid.uuid4())
    assert (await http.post("/threads", json={"thread_id": thread})).status_code == 200
    said = {"messages": [{"role": "user", "content": "remember the launch code 7421"}]}
    done = await http.post(
        f"/threads/{thread}/runs/wait", json={"assistant_id": "echo", "input": said}
    )
    assert done.status_code == 200, done.text
    before = (await http.get(f"/threads/{thread}/state")).json()
    assert "7421" in str(before["values"])
    assert (await http.delete(f"/threads/{thread}")).status_code == 204
    assert (await http.post("/threads", json={"thread_id": thread})).status_code == 200
    after = (await http.get(f"/threads/{thread}/state")).json()
    assert "7421" not in str(after["values"]), after
