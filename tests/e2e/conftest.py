"""Clients of the session's platform shared by the e2e tests: the official LangGraph SDK and a
plain HTTP client, both with the dev tenant's API key (as `agentbus up` makes it)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from langgraph_sdk import get_client
from langgraph_sdk.client import LangGraphClient

from agentbus.runtime.platform import Platform

from .support import dev_key


@pytest.fixture
async def client(platform: Platform) -> AsyncIterator[LangGraphClient]:
    sdk = get_client(url=platform.gateway_url, api_key=dev_key(platform), timeout=120)
    yield sdk
    await sdk.aclose()


@pytest.fixture
async def http(platform: Platform) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=platform.gateway_url, headers={"x-api-key": dev_key(platform)}, timeout=120
    ) as c:
        yield c
