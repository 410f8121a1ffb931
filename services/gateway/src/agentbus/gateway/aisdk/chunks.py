"""Run events as AI SDK UI message stream chunks (`uiMessageChunkSchema` of the `ai` package).

One assistant message per run: `start` (message id = run id), then per graph node a step
(`start-step` … `finish-step`) holding its text (`text-start`/`-delta`/`-end`), our tool calls as
dynamic tools (`tool-input-start`, `tool-input-available`, `tool-output-available` or
`tool-output-error`), each citation as `source-url` (the document in the gateway's API, page in
the fragment) and routing / model selection as `data-routing` / `data-model-selection`; at the
end `finish` with the run's status in `messageMetadata`, then `[DONE]`.
"""

from __future__ import annotations

import json
from collections import defaultdict, deque
from typing import Any

from agentbus.contracts import RunEvent

DONE = b"data: [DONE]\n\n"

FINISH_REASON = {"success": "stop", "error": "error"}


def frame(chunk: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(chunk, separators=(",", ":"), default=str).encode() + b"\n\n"


class ChunkEncoder:
    """Turns one run's events, in order, into UI message chunks (pure: no I/O)."""

    def __init__(self, run_id: str, thread_id: str, documents_url: str) -> None:
        self.run_id = run_id
        self.thread_id = thread_id
        # Base of the citations' URLs, e.g. http://host/api/v1/documents/
        self.documents_url = documents_url
        self.in_step = False
        self.text_id: str | None = None
        self.streamed_text = False
        self.sources: set[str] = set()
        # Our events carry no call id: a tool's end answers its oldest open start.
        self.open_tools: dict[str, deque[str]] = defaultdict(deque)

    def start(self) -> list[dict[str, Any]]:
        return [
            {
                "type": "start",
                "messageId": self.run_id,
                "messageMetadata": {"run_id": self.run_id, "thread_id": self.thread_id},
            }
        ]

    def _step(self) -> list[dict[str, Any]]:
        if self.in_step:
            return []
        self.in_step = True
        return [{"type": "start-step"}]

    def _end_text(self) -> list[dict[str, Any]]:
        if self.text_id is None:
            return []
        text_id, self.text_id = self.text_id, None
        return [{"type": "text-end", "id": text_id}]

    def _end_step(self) -> list[dict[str, Any]]:
        out = self._end_text()
        if self.in_step:
            self.in_step = False
            out.append({"type": "finish-step"})
        return out

    def _text(self, key: str, delta: str) -> list[dict[str, Any]]:
        out = self._step()
        if self.text_id is None:
            self.text_id = f"{self.run_id}:{key}"
            out.append({"type": "text-start", "id": self.text_id})
        out.append({"type": "text-delta", "id": self.text_id, "delta": delta})
        self.streamed_text = True
        return out

    def _sources(self, citations: Any) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for cite in citations if isinstance(citations, list) else []:
            if not isinstance(cite, dict) or not cite.get("document_id"):
                continue
            doc, page = str(cite["document_id"]), cite.get("page")
            source_id = f"{doc}:{page if page is not None else ''}:{cite.get('chunk_index', '')}"
            if source_id in self.sources:
                continue
            self.sources.add(source_id)
            chunk: dict[str, Any] = {
                "type": "source-url",
                "sourceId": source_id,
                "url": self.documents_url + doc + (f"#page={page}" if page is not None else ""),
                "providerMetadata": {
                    "agentbus": {k: v for k, v in cite.items() if v is not None},
                },
            }
            if cite.get("title"):
                chunk["title"] = str(cite["title"])
            out.append(chunk)
        return out

    def chunks(self, event: RunEvent) -> list[dict[str, Any]]:
        data = event.data
        kind = event.type
        if kind == "token":
            return self._text(str(event.seq), str(data.get("text", "")))
        if kind == "node_start":
            return [*self._end_step(), *self._step()]
        if kind == "node_end":
            return self._end_step()
        if kind in ("routing", "model_selection"):
            name = "data-routing" if kind == "routing" else "data-model-selection"
            return [*self._end_text(), {"type": name, "data": {**data, "node": event.node}}]
        if kind == "tool_start":
            call_id = f"{self.run_id}:{event.seq}"
            tool = str(data.get("tool", "tool"))
            self.open_tools[tool].append(call_id)
            return [
                *self._end_text(),
                *self._step(),
                {
                    "type": "tool-input-start",
                    "toolCallId": call_id,
                    "toolName": tool,
                    "dynamic": True,
                },
                {
                    "type": "tool-input-available",
                    "toolCallId": call_id,
                    "toolName": tool,
                    "input": data.get("arguments", {}),
                    "dynamic": True,
                },
            ]
        if kind == "tool_end":
            tool = str(data.get("tool", "tool"))
            if not self.open_tools[tool]:
                return []
            call_id = self.open_tools[tool].popleft()
            if data.get("ok", True):
                output = {k: v for k, v in data.items() if k not in ("tool", "ok")}
                return [
                    {
                        "type": "tool-output-available",
                        "toolCallId": call_id,
                        "output": output,
                        "dynamic": True,
                    }
                ]
            return [
                {
                    "type": "tool-output-error",
                    "toolCallId": call_id,
                    "errorText": str(data.get("result_preview") or "the tool failed"),
                    "dynamic": True,
                }
            ]
        if kind == "citations":
            return [*self._end_text(), *self._step(), *self._sources(data.get("citations"))]
        if kind == "error":
            return [
                *self._end_text(),
                {"type": "error", "errorText": str(data.get("message", "error"))},
            ]
        if kind == "end":
            return self._end(event)
        return []

    def _end(self, event: RunEvent) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        answer = str(event.data.get("answer") or "")
        if answer and not self.streamed_text:
            # A graph that does not stream tokens: its answer as one text part.
            out += [*self._end_step(), *self._text("answer", answer)]
        out += self._sources(event.data.get("citations"))
        out += self._end_step()
        status = event.status or "success"
        metadata: dict[str, Any] = {
            "run_id": self.run_id,
            "thread_id": self.thread_id,
            "status": status,
        }
        if status == "interrupted":
            metadata["interrupts"] = event.data.get("interrupts", [])
        out.append(
            {
                "type": "finish",
                "finishReason": FINISH_REASON.get(status, "other"),
                "messageMetadata": metadata,
            }
        )
        return out
