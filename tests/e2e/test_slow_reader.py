"""A slow SSE reader (issue 21, "Limits reached"): a client that reads its stream through a 4 KB
receive window, a kilobyte at a time, gets every event of a long run, in order, none dropped,
while another client's run on the same gateway completes meanwhile.

The reader speaks HTTP through h11 over its own socket, so it takes bytes only when it chooses:
what it has not read waits in the gateway (back-pressure), not in a client library's buffer.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import urllib.parse
from typing import Any

import h11
import pytest
from langgraph_sdk.client import LangGraphClient

from agentbus.runtime.platform import Platform

from .support import dev_key

pytestmark = pytest.mark.e2e

STEPS = 300  # the values event carries every step done so far: ~250 KB of events in all


async def read_slowly(platform: Platform, thread_id: str) -> str:
    """The stream's body, read a kilobyte every 10 ms through a 4 KB receive window."""
    url = urllib.parse.urlsplit(platform.gateway_url)
    host, port = url.hostname or "127.0.0.1", url.port or 80
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (host, port))
    reader, writer = await asyncio.open_connection(sock=sock)
    body = json.dumps(
        {
            "assistant_id": "steps",
            "input": {"steps": STEPS, "delay": 0},
            "config": {"recursion_limit": 2 * STEPS + 10},
            "stream_mode": ["values", "custom"],
        }
    ).encode()
    conn = h11.Connection(our_role=h11.CLIENT)
    headers = [
        ("host", f"{host}:{port}"),
        ("x-api-key", dev_key(platform)),
        ("content-type", "application/json"),
        ("accept", "text/event-stream"),
        ("content-length", str(len(body))),
    ]
    target = f"/threads/{thread_id}/runs/stream"
    writer.write(conn.send(h11.Request(method="POST", target=target, headers=headers)) or b"")
    writer.write(conn.send(h11.Data(data=body)) or b"")
    writer.write(conn.send(h11.EndOfMessage()) or b"")
    await writer.drain()
    received: list[bytes] = []
    try:
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                await asyncio.sleep(0.01)
                conn.receive_data(await asyncio.wait_for(reader.read(1024), timeout=120))
            elif isinstance(event, h11.Response):
                assert event.status_code == 200, event
            elif isinstance(event, h11.Data):
                received.append(bytes(event.data))
            elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
                break
    finally:
        writer.close()
    return b"".join(received).decode()


def sse_events(text: str) -> list[tuple[str, Any]]:
    events = []
    for block in re.split(r"\r?\n\r?\n", text):
        name = data = None
        for line in block.splitlines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                data = line[6:]
        if name and data is not None:
            events.append((name, json.loads(data)))
    return events


async def test_a_slow_reader_gets_every_event_in_order_and_others_go_on(
    platform: Platform, client: LangGraphClient
) -> None:
    slow_thread = (await client.threads.create())["thread_id"]
    other_thread = (await client.threads.create())["thread_id"]
    slow = asyncio.create_task(read_slowly(platform, slow_thread))
    await asyncio.sleep(1)  # the slow stream is open and falling behind
    meanwhile: dict[str, Any] = {"messages": [{"role": "user", "content": "meanwhile"}]}
    other = await client.runs.wait(other_thread, "echo", input=meanwhile)
    assert isinstance(other, dict) and other["messages"], other
    text = await slow
    print(f"\nslow reader: {len(text):,} bytes")
    events = sse_events(text)
    steps = [data["step"] for name, data in events if name == "custom"]
    assert steps == list(range(1, STEPS + 1))
    values = [data for name, data in events if name == "values"]
    assert values[-1]["done"] == list(range(1, STEPS + 1))
    assert not [name for name, _ in events if name == "error"]
