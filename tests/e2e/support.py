"""Small helpers the e2e tests share."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from langgraph_sdk.client import LangGraphClient

from agentbus.runtime.platform import Platform


def dev_key(platform: Platform) -> str:
    """The dev tenant's API key that `agentbus up` writes into the data dir."""
    return (platform.data_dir / "dev-api-key").read_text().strip()


async def register(anon: httpx.AsyncClient, body: dict[str, Any]) -> httpx.Response:
    """POST /api/v1/auth/register, waiting out the register rate limit: the session's platform
    keeps it low (a test shows its 429), so a test registering soon after may meet it."""
    for _ in range(4):
        response = await anon.post("/api/v1/auth/register", json=body)
        if response.status_code != 429:
            return response
        await asyncio.sleep(int(response.headers.get("Retry-After", "5")) + 0.5)
    return response


async def steps_run(client: LangGraphClient, n: int, delay: float) -> list[Any]:
    """A `steps` run streamed through the SDK: its parts (custom events carry each step)."""
    thread = await client.threads.create()
    return [
        part
        async for part in client.runs.stream(
            thread["thread_id"],
            "steps",
            input={"steps": n, "delay": delay},
            stream_mode=["custom", "values"],
        )
    ]
