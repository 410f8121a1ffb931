"""`agentbus up` keeps the platform alive: kill -9 an engine or a service under load, and it comes
back by itself on the same address, with nothing accepted lost.

These tests kill processes of the session's shared platform, so each one waits until the
platform is ready again before it ends; the tests after it find it whole.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections import Counter
from typing import Any

import httpx
import pytest
from langgraph_sdk.client import LangGraphClient

from agentbus.runtime.engines import ProcessEngine
from agentbus.runtime.platform import Platform, read_state

from .knowledge import pdf_bytes
from .support import steps_run

pytestmark = pytest.mark.e2e


async def until_ready(platform: Platform, timeout: float = 120) -> float:
    """Seconds until /readyz answers 200 again."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        try:
            status, _ = await asyncio.to_thread(platform.readiness, 5)
            if status == 200:
                return time.monotonic() - started
        except (httpx.HTTPError, ValueError):
            pass
        await asyncio.sleep(0.25)
    raise AssertionError(f"platform not ready {timeout}s after the kill")


def supervisor_lines(platform: Platform) -> str:
    return (platform.data_dir / "logs" / "supervisor.log").read_text()


async def test_killed_orchestrator_is_restarted_and_the_stream_finishes(
    platform: Platform, client: LangGraphClient
) -> None:
    old_pid = platform.procs["orchestrator"].pid
    thread = await client.threads.create()
    parts: list[Any] = []
    killed = False
    async for part in client.runs.stream(
        thread["thread_id"],
        "steps",
        input={"steps": 6, "delay": 0.4},
        stream_mode=["custom", "values"],
    ):
        parts.append(part)
        if not killed and part.event == "custom" and part.data["step"] == 2:
            # Not platform.stop_service: that is a deliberate stop the supervisor respects.
            os.kill(old_pid, signal.SIGKILL)
            killed = True
    assert killed
    print(f"\norchestrator: killed at step 2, stream finished {len(parts)} parts later")
    # The same stream went on: the run was redelivered to the restarted orchestrator.
    steps = Counter(p.data["step"] for p in parts if p.event == "custom")
    assert set(steps) == {1, 2, 3, 4, 5, 6}
    assert steps[1] == 1  # resumed from its checkpoint, not from the start
    assert parts[-1].event == "values" and parts[-1].data.get("done") is not False
    assert platform.procs["orchestrator"].pid != old_pid
    assert "orchestrator stopped unexpectedly (signal SIGKILL" in supervisor_lines(platform)
    await until_ready(platform)
    state = read_state(platform.data_dir)
    assert state is not None and state.pids["orchestrator"] == platform.procs["orchestrator"].pid


def engine(platform: Platform, name: str) -> ProcessEngine:
    found = {e.name: e for e in platform.engines.engines}[name]
    assert isinstance(found, ProcessEngine)
    return found


@pytest.mark.parametrize("name", ["nats", "postgres", "graph"])
async def test_killed_engine_comes_back_and_work_goes_on(
    platform: Platform, client: LangGraphClient, http: httpx.AsyncClient, name: str
) -> None:
    target = engine(platform, name)
    url_before, restarts_before = target.url, target.restarts
    # Work in flight when the engine dies: a run that checkpoints every step, and a document.
    in_flight = asyncio.create_task(steps_run(client, 4, 0.5))
    upload = await http.post(
        "/api/v1/documents",
        files={"file": (f"{name}-manual.pdf", pdf_bytes(_pages(name)), "application/pdf")},
        data={"title": f"Manual for {name}"},
    )
    assert upload.status_code == 202, upload.text
    document = upload.json()["document_id"]
    await asyncio.sleep(0.7)
    killed_at = time.monotonic()
    os.kill(target.pids()[0], signal.SIGKILL)
    for _ in range(1200):  # the supervisor restarts it within a second or two
        if target.restarts != restarts_before:
            break
        await asyncio.sleep(0.1)
    # Ready again: restarted, and the gateway's (cached) readiness checks agree.
    await until_ready(platform)
    recovered_in = time.monotonic() - killed_at
    print(f"\n{name}: killed, platform ready again after {recovered_in:.1f}s")

    assert target.restarts == restarts_before + 1
    assert target.url == url_before  # same address: services reconnect without a restart
    assert f"{name} is back" in supervisor_lines(platform)
    parts = await asyncio.wait_for(in_flight, 180)
    steps = {p.data["step"] for p in parts if p.event == "custom"}
    assert steps == {1, 2, 3, 4}, parts
    # The document killed mid-way is indexed in the end (redelivered, idempotent writes).
    deadline = time.monotonic() + 180
    status = ""
    while time.monotonic() < deadline:
        status = (await http.get(f"/api/v1/documents/{document}")).json().get("status", "")
        if status in {"indexed", "failed"}:
            break
        await asyncio.sleep(0.5)
    assert status == "indexed"
    # And new work after the restart uses the engine again.
    after = await steps_run(client, 1, 0.0)
    assert [p.data["step"] for p in after if p.event == "custom"] == [1]
    answer = await http.post(
        "/api/v1/chat", json={"message": f"What does the {name} manual say about lanterns?"}
    )
    assert answer.status_code == 200, answer.text
    assert any(c["document_id"] == document for c in answer.json()["citations"]), recovered_in


def _pages(name: str) -> list[str]:
    return [
        f"The {name} manual. Lanterns in the {name} hall are lit at dusk by the night porter.",
        f"Keys. The {name} storeroom key hangs behind the reception desk.",
    ]
