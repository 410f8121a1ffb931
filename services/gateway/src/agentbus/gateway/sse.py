"""Server-Sent Events framing and the native event names of a run."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from typing import Any

from fastapi.responses import StreamingResponse

from agentbus.contracts import RunEvent

HEARTBEAT = b": keepalive\n\n"
# Every stream: never cached, and proxies (nginx) must not buffer it.
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def sse_response(
    body: AsyncIterator[bytes], headers: Mapping[str, str] | None = None
) -> StreamingResponse:
    """The one way a route answers with Server-Sent Events: `body` yields framed events."""
    return StreamingResponse(
        body, media_type="text/event-stream", headers={**SSE_HEADERS, **(headers or {})}
    )


def frame(event: str, data: Any, event_id: str | int | None = None) -> bytes:
    lines = []
    if event_id is not None:
        lines.append(f"id: {event_id}")
    lines.append(f"event: {event}")
    payload = json.dumps(data, separators=(",", ":"), default=str)
    lines.extend(f"data: {line}" for line in payload.splitlines() or [""])
    return ("\n".join(lines) + "\n\n").encode()


# RunEvent type -> native SSE event name; types not listed are not part of the native stream.
NATIVE = {
    "metadata": "stream_start",
    "model_selection": "model_selection",
    "routing": "routing",
    "tool_start": "tool_start",
    "tool_end": "tool_end",
    "token": "token",
    "citations": "citations",
    "error": "error",
}


def native_frames(event: RunEvent, tokens: int, elapsed_ms: float) -> list[bytes]:
    """The native SSE frames for one run event (`end` becomes `response` + `stream_end`)."""
    if event.type == "end":
        body = {
            "run_id": event.run_id,
            "thread_id": event.thread_id,
            "status": event.status,
            "text": event.data.get("answer", ""),
            "citations": event.data.get("citations", []),
        }
        if event.status == "interrupted":
            body["interrupts"] = event.data.get("interrupts", [])
        return [
            frame("response", body, event.seq),
            frame(
                "stream_end",
                {
                    "run_id": event.run_id,
                    "status": event.status,
                    "tokens": tokens,
                    "elapsed_ms": round(elapsed_ms, 1),
                },
            ),
        ]
    name = NATIVE.get(event.type)
    if name is None:
        return []
    data = {"run_id": event.run_id, **event.data}
    if event.node:
        data["node"] = event.node
    return [frame(name, data, event.seq)]
