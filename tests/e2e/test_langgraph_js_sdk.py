"""The official JavaScript client, `@langchain/langgraph-sdk` from npm, unmodified, against the
gateway (services/gateway/tests/node/langgraph_sdk.mjs): a thread, `values` + `messages-tuple`
streamed from a user's graph that pauses in an interrupt(), state, history, resume."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any
from uuid import UUID, uuid5

import pytest

from agentbus.runtime.platform import Platform

pytestmark = pytest.mark.e2e

NODE_DIR = Path(__file__).parents[2] / "services/gateway/tests/node"
NAMESPACE_GRAPH = UUID("6ba7b821-9dad-11d1-80b4-00c04fd430c8")


async def run_js(platform: Platform, graph: str) -> dict[str, Any]:
    assert shutil.which("node"), "node is required (make test installs the npm packages)"
    sdk = NODE_DIR / "node_modules" / "@langchain" / "langgraph-sdk"
    assert sdk.is_dir(), "run `make node-tests` (npm ci)"
    key = (platform.data_dir / "dev-api-key").read_text().strip()
    proc = await asyncio.create_subprocess_exec(
        "node",
        str(NODE_DIR / "langgraph_sdk.mjs"),
        platform.gateway_url,
        key,
        graph,
        cwd=NODE_DIR,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=300)
    assert proc.returncode == 0, err.decode()
    result: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    return result


async def test_js_sdk_streams_reads_history_and_resumes(platform: Platform) -> None:
    got = await run_js(platform, "notes")
    first = got["first"]
    assert first[0]["event"] == "metadata"
    assert first[0]["data"]["thread_id"] == got["thread_id"]
    chunks = [p["data"] for p in first if p["event"] == "messages"]
    text = "".join(c[0]["content"] for c in chunks)
    assert text.startswith("You said: please approve the js note (")
    assert {c[1]["langgraph_node"] for c in chunks} == {"reply"}
    last = [p["data"] for p in first if p["event"] == "values"][-1]
    assert last["__interrupt__"][0]["value"] == {"question": "Approve this note?"}
    assert last["messages"][-1]["id"] == chunks[0][0]["id"]

    assert got["paused"]["next"] == ["review"]
    assert got["paused"]["interrupts"][0]["value"] == {"question": "Approve this note?"}
    final = [p["data"] for p in got["resumed"] if p["event"] == "values"][-1]
    assert final["approved"] == "from js"
    assert final["messages"][-1]["content"] == "approved: from js"

    history = got["history"]
    assert history[0]["values"]["approved"] == "from js" and history[0]["next"] == []
    assert ["review"] in [h["next"] for h in history]
    assert got["thread_id"] in got["listed"]
    assert got["assistant"]["assistant_id"] == str(uuid5(NAMESPACE_GRAPH, "notes"))
