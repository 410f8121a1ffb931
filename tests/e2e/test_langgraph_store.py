"""The LangGraph store API with the official `langgraph_sdk`: the same PostgreSQL store the
graphs receive as `runtime.store` (the `notes` graph writes there), per tenant."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from langgraph_sdk import get_client
from langgraph_sdk.client import LangGraphClient

from agentbus.runtime.platform import Platform

from .support import register

pytestmark = pytest.mark.e2e


def ask(text: str) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": text}]}


async def test_items_search_namespaces_and_delete(client: LangGraphClient) -> None:
    user = f"u{id(client)}"
    await client.store.put_item(["prefs", user], "theme", {"color": "green", "size": 2})
    await client.store.put_item(["prefs", user], "lang", {"code": "fr", "size": 1})
    await client.store.put_item(["prefs", user, "deep"], "x", {"size": 3})
    item = await client.store.get_item(["prefs", user], "theme")
    assert item is not None
    assert item["value"] == {"color": "green", "size": 2}
    assert item["namespace"] == ["prefs", user] and item["key"] == "theme"
    assert item["created_at"] and item["updated_at"]
    assert await client.store.get_item(["prefs", user], "missing") is None

    found = await client.store.search_items(["prefs", user], limit=10)
    assert {i["key"] for i in found["items"]} == {"theme", "lang", "x"}
    green = await client.store.search_items(["prefs", user], filter={"color": "green"})
    assert [i["key"] for i in green["items"]] == ["theme"]
    page = await client.store.search_items(["prefs", user], limit=2, offset=2)
    assert len(page["items"]) == 1

    names = await client.store.list_namespaces(prefix=["prefs", user])
    assert sorted(names["namespaces"]) == [["prefs", user], ["prefs", user, "deep"]]
    shallow = await client.store.list_namespaces(prefix=["prefs", user], max_depth=2)
    assert shallow["namespaces"] == [["prefs", user]]
    by_suffix = await client.store.list_namespaces(suffix=["deep"])
    assert ["prefs", user, "deep"] in by_suffix["namespaces"]

    await client.store.put_item(["prefs", user], "theme", {"color": "blue"})
    again = await client.store.get_item(["prefs", user], "theme")
    assert again is not None and again["value"] == {"color": "blue"}
    await client.store.delete_item(["prefs", user], "theme")
    assert await client.store.get_item(["prefs", user], "theme") is None


async def test_graphs_and_the_api_share_the_store(client: LangGraphClient) -> None:
    text = f"shared note {id(client)}"
    await client.runs.wait(None, "notes", input=ask(text))
    found = await client.store.search_items(["notes"], filter={"text": text})
    assert [i["value"] for i in found["items"]] == [{"text": text}]
    # And what the API writes, the graph counts.
    before = await client.runs.wait(None, "notes", input=ask(text))
    await client.store.put_item(["notes"], f"api{id(client)}", {"text": "from the API"})
    after = await client.runs.wait(None, "notes", input=ask(text))
    assert isinstance(before, dict) and isinstance(after, dict)
    assert after["notes"] == before["notes"] + 1


async def test_bad_store_requests_and_other_tenants(
    platform: Platform, client: LangGraphClient, http: httpx.AsyncClient
) -> None:
    bad = [
        await http.put("/store/items", json={"namespace": ["a.b"], "key": "k", "value": {}}),
        await http.put("/store/items", json={"namespace": [], "key": "k", "value": {}}),
        await http.put("/store/items", json={"namespace": ["a"], "key": "k", "value": 3}),
        await http.put(
            "/store/items", json={"namespace": ["a"], "key": "k", "value": {}, "ttl": 0}
        ),
        await http.get("/store/items", params={"namespace": "a..b", "key": "k"}),
        await http.post("/store/namespaces", json={"prefix": [""]}),
    ]
    assert [r.status_code for r in bad] == [422] * len(bad), [r.text for r in bad]
    assert (await http.get("/info")).json()["flags"]["store"] is True

    await client.store.put_item(["secret"], "k", {"v": 1})
    async with httpx.AsyncClient(base_url=platform.gateway_url, timeout=30) as anon:
        reg = await register(
            anon,
            {"email": "store@example.com", "password": "Sup3r-secret!", "tenant_name": "S"},
        )
        assert reg.status_code == 201, reg.text
        login = await anon.post(
            "/api/v1/auth/login",
            data={"username": "store@example.com", "password": "Sup3r-secret!"},
        )
        token = login.json()["access_token"]
    other = get_client(
        url=platform.gateway_url, api_key=None, headers={"Authorization": f"Bearer {token}"}
    )
    try:
        assert await other.store.get_item(["secret"], "k") is None
        assert (await other.store.search_items(["secret"]))["items"] == []
        assert ["secret"] not in (await other.store.list_namespaces())["namespaces"]
    finally:
        await other.aclose()


async def test_semantic_search_with_the_platform_embedder(client: LangGraphClient) -> None:
    # The platform fixture indexes the `text` field with the `embed` model group (MiniLM).
    ns = ["kb", f"s{id(client)}"]
    texts = {
        "pasta": "Boil the spaghetti in salted water and serve it with tomato sauce",
        "deploy": "Roll back a failed Kubernetes deployment with kubectl rollout undo",
        "cat": "Cats sleep most of the day and purr when they are content",
    }
    for key, text in texts.items():
        await client.store.put_item(ns, key, {"text": text})
    found = await client.store.search_items(ns, query="how do I undo a broken release?")
    assert found["items"][0]["key"] == "deploy"
    scores = [i["score"] for i in found["items"]]
    assert scores == sorted(scores, reverse=True) and scores[0] > scores[-1]
    cooking = await client.store.search_items(ns, query="dinner recipe with noodles", limit=1)
    assert [i["key"] for i in cooking["items"]] == ["pasta"]
