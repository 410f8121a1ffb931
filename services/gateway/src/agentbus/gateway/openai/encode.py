"""Run events as OpenAI chat completions and chat completion chunks (pure: no I/O)."""

from __future__ import annotations

import json
import time
from typing import Any

from agentbus.contracts import RunEvent

DONE = b"data: [DONE]\n\n"


def frame(body: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(body, separators=(",", ":"), default=str).encode() + b"\n\n"


def model_entry(assistant_id: str, created: int) -> dict[str, Any]:
    return {"id": assistant_id, "object": "model", "created": created, "owned_by": "agentbus"}


class Completion:
    """One run as one completion: `id` is `chatcmpl-<run id>`."""

    def __init__(self, run_id: str, thread_id: str, model: str) -> None:
        self.run_id = run_id
        self.thread_id = thread_id
        self.model = model
        self.id = f"chatcmpl-{run_id}"
        self.created = int(time.time())
        self.citations: list[dict[str, Any]] = []
        self.error: str | None = None

    def _chunk(self, choices: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": None,
            "choices": choices,
            **extra,
        }

    def _delta(self, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}

    def first_chunk(self, with_usage: bool) -> dict[str, Any]:
        extra = {"usage": None} if with_usage else {}
        return self._chunk([self._delta({"role": "assistant", "content": ""})], **extra)

    def chunk(self, event: RunEvent, with_usage: bool) -> dict[str, Any] | None:
        """The chunk for one event, None when the event has none (errors are kept for the end)."""
        extra = {"usage": None} if with_usage else {}
        if event.type == "token":
            return self._chunk([self._delta({"content": str(event.data.get("text", ""))})], **extra)
        if event.type == "citations":
            self._cite(event.data.get("citations"))
        elif event.type == "error":
            self.error = str(event.data.get("message", "the run failed"))
        return None

    def _cite(self, citations: Any) -> None:
        for cite in citations if isinstance(citations, list) else []:
            if isinstance(cite, dict) and cite not in self.citations:
                self.citations.append(cite)

    def failure(self, end: RunEvent) -> str | None:
        """Why the run did not answer, None when it did."""
        if end.status in ("success", "interrupted"):
            return None
        return self.error or f"the run ended {end.status}"

    def last_chunk(self, end: RunEvent, with_usage: bool) -> dict[str, Any]:
        """The closing chunk: finish_reason, and the run's citations (an extra field)."""
        self._cite(end.data.get("citations"))
        extra: dict[str, Any] = {"usage": None} if with_usage else {}
        return self._chunk(
            [self._delta({}, "stop")],
            citations=self.citations,
            agentbus={"run_id": self.run_id, "thread_id": self.thread_id, "status": end.status},
            **extra,
        )

    def usage_chunk(self, usage: dict[str, Any]) -> dict[str, Any]:
        return self._chunk([], usage=usage)

    def whole(self, end: RunEvent, usage: dict[str, Any]) -> dict[str, Any]:
        self._cite(end.data.get("citations"))
        return {
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": None,
            "choices": [
                {
                    "index": 0,
                    "message": {
                        "role": "assistant",
                        "content": str(end.data.get("answer") or ""),
                        "refusal": None,
                        "annotations": [],
                    },
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": usage,
            "citations": self.citations,
            "agentbus": {"run_id": self.run_id, "thread_id": self.thread_id, "status": end.status},
        }
