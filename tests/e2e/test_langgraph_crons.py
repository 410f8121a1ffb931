"""Crons with the official `langgraph_sdk`: scheduled runs on a thread and on new threads,
fired by the gateway's scheduler once per tick; search, count, patch, delete, bad input."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from langgraph_sdk.client import LangGraphClient
from langgraph_sdk.errors import NotFoundError, UnprocessableEntityError

pytestmark = pytest.mark.e2e

EVERY_2S = "* * * * * */2"  # a 6th field is seconds


def ask(text: str) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": text}]}


async def runs_of(client: LangGraphClient, thread: str, at_least: int) -> list[dict[str, Any]]:
    for _ in range(600):
        runs = await client.runs.list(thread, limit=100)
        if len(runs) >= at_least:
            return runs
        await asyncio.sleep(0.1)
    raise AssertionError(f"fewer than {at_least} runs on {thread}")


async def test_a_thread_cron_runs_once_per_tick(client: LangGraphClient) -> None:
    thread = (await client.threads.create())["thread_id"]
    cron = await client.crons.create_for_thread(
        thread, "echo", schedule=EVERY_2S, input=ask("tick"), metadata={"suite": "crons"}
    )
    assert cron["thread_id"] == thread and cron["schedule"] == EVERY_2S
    assert cron["enabled"] is True and cron["next_run_date"]
    runs = await runs_of(client, thread, 3)
    await client.crons.update(cron["cron_id"], enabled=False)
    ticks = [r["metadata"]["cron_tick"] for r in runs]
    assert len(ticks) == len(set(ticks))  # never two runs for one tick
    assert all(r["metadata"]["cron_id"] == cron["cron_id"] for r in runs)
    first = datetime.fromisoformat(min(ticks))
    assert all(datetime.fromisoformat(t).second % 2 == 0 for t in ticks)
    assert first >= datetime.fromisoformat(cron["created_at"]) - timedelta(seconds=1)
    # Disabled: no new tick is claimed (one may have been in flight when it was disabled).
    settled = len(await runs_of(client, thread, len(runs)))
    await asyncio.sleep(4)
    assert len(await client.runs.list(thread, limit=100)) <= settled + 1
    state = await client.threads.get_state(thread)
    assert [m["content"] for m in state["values"]["messages"]][:2] == ["tick", "tick"]
    await client.crons.delete(cron["cron_id"])


async def test_stateless_cron_new_thread_per_tick_until_end_time(client: LangGraphClient) -> None:
    tag = f"c{id(client)}"
    end = datetime.now(UTC) + timedelta(seconds=5)
    cron = await client.crons.create(
        "notes",
        schedule=EVERY_2S,
        input=ask("cron note"),
        end_time=end,
        metadata={"tag": tag},
        on_run_completed="keep",  # LangGraph's default deletes each tick's thread after its run
    )
    assert cron["thread_id"] is None
    threads: list[dict[str, Any]] = []
    for _ in range(300):
        threads = await client.threads.search(metadata={"cron_id": cron["cron_id"]}, limit=50)
        if len(threads) >= 2:
            break
        await asyncio.sleep(0.1)
    assert len(threads) >= 2 and len({t["thread_id"] for t in threads}) == len(threads)
    # Past end_time the cron stops and says so.
    for _ in range(200):
        found = await client.crons.search(metadata={"tag": tag})
        if found and found[0]["enabled"] is False:
            break
        await asyncio.sleep(0.1)
    assert found[0]["enabled"] is False
    await client.crons.delete(cron["cron_id"])


async def test_cron_search_count_patch_delete_and_bad_input(
    client: LangGraphClient, http: httpx.AsyncClient
) -> None:
    tag = f"s{id(client)}"
    thread = (await client.threads.create())["thread_id"]
    daily = await client.crons.create("echo", schedule="0 9 * * *", metadata={"tag": tag})
    hourly = await client.crons.create_for_thread(
        thread, "notes", schedule="0 * * * *", metadata={"tag": tag}
    )
    assert datetime.fromisoformat(daily["next_run_date"]).hour == 9
    assert await client.crons.count(metadata={"tag": tag}) == 2
    on_thread = await client.crons.search(thread_id=thread)
    assert [c["cron_id"] for c in on_thread] == [hourly["cron_id"]]
    assert await client.crons.count(assistant_id=hourly["assistant_id"], metadata={"tag": tag}) == 1
    ordered = await client.crons.search(
        metadata={"tag": tag}, sort_by="next_run_date", sort_order="asc", select=["cron_id"]
    )
    assert all(set(c) == {"cron_id"} for c in ordered)

    patched = await client.crons.update(
        daily["cron_id"], schedule="30 18 * * *", metadata={"n": 2}, input=ask("later")
    )
    assert patched["schedule"] == "30 18 * * *" and patched["metadata"] == {"tag": tag, "n": 2}
    assert patched["payload"]["input"] == ask("later")
    assert datetime.fromisoformat(patched["next_run_date"]).hour == 18

    for body, status in [
        ({"assistant_id": "echo", "schedule": "every day"}, 422),
        ({"assistant_id": "echo", "schedule": "* * * * *", "webhook": "http://x"}, 422),
        ({"assistant_id": "nobody", "schedule": "* * * * *"}, 404),
        ({"assistant_id": "echo", "schedule": "* * * * *", "stream_mode": "debug"}, 422),
    ]:
        response = await http.post("/runs/crons", json=body)
        assert response.status_code == status, response.text
    missing = await http.post(
        "/threads/no-such-thread/runs/crons", json={"assistant_id": "echo", "schedule": "* * * * *"}
    )
    assert missing.status_code == 404
    with pytest.raises(UnprocessableEntityError):
        await client.crons.search(sort_by="schedule; drop table")  # type: ignore[arg-type]

    await client.crons.delete(daily["cron_id"])
    await client.crons.delete(hourly["cron_id"])
    with pytest.raises(NotFoundError):
        await client.crons.delete(daily["cron_id"])
    assert await client.crons.count(metadata={"tag": tag}) == 0
    assert (await http.get("/info")).json()["flags"]["crons"] is True
