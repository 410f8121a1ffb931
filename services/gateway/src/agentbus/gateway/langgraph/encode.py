"""Run events as LangGraph Agent Server stream parts (`event: <mode>` SSE frames).

| RunEvent            | stream mode: SSE event                                                |
|---------------------|-----------------------------------------------------------------------|
| values / updates    | values: `values` / updates: `updates`                                 |
| token               | messages-tuple: `messages` [chunk, metadata]; events: on_chat_model_stream |
| node_start/node_end | events: on_chain_start / on_chain_end                                 |
| tool_start/tool_end | events: on_tool_start / on_tool_end                                   |
| custom              | custom: `custom`; events: on_custom_event                             |
| routing, model_selection, citations | events: on_custom_event named by the type             |

An `error` event is `event: error` {"error", "message"} whatever the modes; an `end` with
status `interrupted` repeats the values (and updates) with `__interrupt__`, as LangGraph does.

Frame ids are `<seq>` for an event's first frame and `<seq>.<k>` for its k-th, so a client that
resumes with Last-Event-ID gets exactly the frames after the last one it saw, even when one event
became several frames. The leading `metadata` frame has no id: it is not part of the run's events.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from agentbus.contracts import RunEvent

# What the SDK may ask for and this server streams; the rest of LangGraph's modes are a 422.
SUPPORTED_MODES = ("values", "updates", "messages-tuple", "custom", "events")

# Run events with no LangGraph stream part of their own; `events` mode carries them as custom
# events named by their type (the web app's status bar and routing badge read them).
PLATFORM_EVENTS = ("routing", "model_selection", "citations")

# OpenAI-style roles (our graphs' state) <-> LangChain message types (what LangGraph clients show).
ROLE_TO_TYPE = {"user": "human", "assistant": "ai", "system": "system", "tool": "tool"}
TYPE_TO_ROLE = {v: k for k, v in ROLE_TO_TYPE.items()} | {"AIMessageChunk": "assistant"}


def frame(event: str, data: Any, event_id: str | None = None) -> bytes:
    head = f"id: {event_id}\n" if event_id is not None else ""
    payload = json.dumps(data, separators=(",", ":"), default=str, ensure_ascii=False)
    return f"{head}event: {event}\ndata: {payload}\n\n".encode()


def parse_event_id(value: str | None) -> tuple[int, int]:
    """Last-Event-ID -> (seq, frame index); (-1, 0) for none, and for "-1", which the JS SDK's
    `joinStream` sends to replay a run from its start. ValueError when malformed."""
    if value is None or value in ("", "-1"):
        return -1, 0
    seq, _, k = value.partition(".")
    result = int(seq), int(k) if k else 0
    if result[0] < 0 or result[1] < 0:
        raise ValueError(value)
    return result


def _fill_messages(value: Any, key: str, source: str, table: dict[str, str]) -> Any:
    """Each message dict of a state's `messages` without `key` gets table[message[source]]."""
    if not isinstance(value, dict):
        return value
    out = dict(value)
    messages = out.get("messages")
    if isinstance(messages, list):
        out["messages"] = [
            {**m, key: table[m[source]]}
            if isinstance(m, dict) and key not in m and m.get(source) in table
            else m
            for m in messages
        ]
    return out


def with_message_types(value: Any) -> Any:
    """Add LangChain's `type` to each message dict of a state (`messages` lists), keeping `role`."""
    return _fill_messages(value, "type", "role", ROLE_TO_TYPE)


def with_message_roles(value: Any) -> Any:
    """The reverse for input: LangChain `type` -> `role` where a message has no role."""
    return _fill_messages(value, "role", "type", TYPE_TO_ROLE)


def message_chunk(text: str, message_id: str) -> dict[str, Any]:
    """An AIMessageChunk as LangChain serialises it."""
    return {
        "content": text,
        "additional_kwargs": {},
        "response_metadata": {},
        "type": "AIMessageChunk",
        "name": None,
        "id": message_id,
        "example": False,
        "tool_calls": [],
        "invalid_tool_calls": [],
        "usage_metadata": None,
        "tool_call_chunks": [],
    }


def error_body(data: Mapping[str, Any]) -> dict[str, str]:
    """LangGraph's error body from a run's `error` event: `error` is the event's reason code
    (the orchestrator never sends exception text, issue 13), `message` its sentence."""
    reason = str(data.get("reason") or "")
    code = reason if re.fullmatch(r"[a-z][a-z0-9_]{0,39}", reason) else "run_error"
    return {"error": code, "message": str(data.get("message") or "The run failed")}


@dataclass
class Encoder:
    """Turns one run's events, in order, into SSE frames for the requested stream modes.

    Stateful (message ids count the node's model calls; an interrupt repeats the last values),
    so it must see every event from the first even when frames before Last-Event-ID are skipped.
    """

    modes: frozenset[str]
    run_id: str
    thread_id: str
    assistant_id: str
    values: dict[str, Any] = field(default_factory=dict)
    node_calls: dict[str, int] = field(default_factory=dict)
    # The result of the run, for /wait and /join: the last values, or an error.
    error: dict[str, str] | None = None
    status: str | None = None

    def _meta(self, node: str | None) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "thread_id": self.thread_id,
            "assistant_id": self.assistant_id,
            "langgraph_node": node,
        }

    def parts(self, event: RunEvent) -> list[tuple[str, Any]]:
        """(SSE event name, data) for one run event; updates the encoder's state."""
        if event.namespace:
            nested = self._subgraph_parts(event)
            if event.type in ("tool_start", "tool_end") or event.type in PLATFORM_EVENTS:
                # Stream mode "events" is astream_events: nested runs' events are in it,
                # subgraphs or not (the web app's tool steps come from a specialist's tools).
                root = self.parts(event.model_copy(update={"namespace": None}))
                nested += [part for part in root if part[0] == "events"]
            return nested
        out: list[tuple[str, Any]] = []
        node = event.node
        want = self.modes.__contains__
        if event.type == "values":
            self.values = with_message_types(event.data)
            if want("values"):
                out.append(("values", self.values))
        elif event.type == "updates":
            if want("updates"):
                out.append(("updates", {k: with_message_types(v) for k, v in event.data.items()}))
        elif event.type == "node_start" and node:
            self.node_calls[node] = self.node_calls.get(node, 0) + 1
            if want("events"):
                out.append(("events", self._lc_event("on_chain_start", node, {"input": {}})))
        elif event.type == "node_end" and node and want("events"):
            out.append(("events", self._lc_event("on_chain_end", node, {"output": {}})))
        elif event.type == "token":
            msg_id = f"run-{self.run_id}-{node or 'model'}-{self.node_calls.get(node or '', 0)}"
            # A user's graph streams LangChain's own chunks (their ids match the messages in
            # the state); the built-in graphs stream text.
            given = event.data.get("message")
            chunk = (
                given
                if isinstance(given, dict)
                else message_chunk(str(event.data.get("text", "")), msg_id)
            )
            if want("messages-tuple"):
                out.append(("messages", [chunk, self._meta(node)]))
            if want("events"):
                out.append(
                    ("events", self._lc_event("on_chat_model_stream", node, {"chunk": chunk}))
                )
        elif event.type in ("tool_start", "tool_end") and want("events"):
            name = str(event.data.get("tool", "tool"))
            data = (
                {"input": event.data.get("arguments", {})}
                if event.type == "tool_start"
                else {"output": event.data.get("result_preview")}
            )
            out.append(("events", self._lc_event(f"on_{event.type}", node, data, name=name)))
        elif event.type in PLATFORM_EVENTS and want("events"):
            # The platform's own steps, as LangGraph shows a dispatched custom event
            # (`adispatch_custom_event(name, data)`): the name says which.
            out.append(
                ("events", self._lc_event("on_custom_event", node, event.data, name=event.type))
            )
        elif event.type == "custom":
            if want("custom"):
                out.append(("custom", event.data))
            if want("events"):
                out.append(
                    ("events", self._lc_event("on_custom_event", node, event.data, name="custom"))
                )
        elif event.type == "error":
            self.error = error_body(event.data)
            out.append(("error", self.error))
        elif event.type == "end":
            self.status = event.status
            interrupts = event.data.get("interrupts") or []
            if event.status == "interrupted" and interrupts:
                marked = [
                    {"value": v, "id": f"{self.run_id}-{i}"} for i, v in enumerate(interrupts)
                ]
                self.values = {**self.values, "__interrupt__": marked}
                if want("values"):
                    out.append(("values", self.values))
                if want("updates"):
                    out.append(("updates", {"__interrupt__": marked}))
        return out

    def _subgraph_parts(self, event: RunEvent) -> list[tuple[str, Any]]:
        """A subgraph's part (stream_subgraphs), named `<mode>|<namespace>` as LangGraph names
        it; it never becomes the run's values."""
        suffix = "|" + "|".join(event.namespace or [])
        want = self.modes.__contains__
        if event.type in ("values", "updates") and want(event.type):
            data = with_message_types(event.data)
            if event.type == "updates":
                data = {k: with_message_types(v) for k, v in event.data.items()}
            return [(event.type + suffix, data)]
        if event.type == "token" and want("messages-tuple"):
            given = event.data.get("message")
            chunk = given if isinstance(given, dict) else message_chunk("", "")
            return [("messages" + suffix, [chunk, self._meta(event.node)])]
        if event.type == "custom" and want("custom"):
            return [("custom" + suffix, event.data)]
        return []

    def frames(self, event: RunEvent, after: tuple[int, int] = (-1, 0)) -> list[bytes]:
        """The frames of `event` after the frame id `after` (all of them when it is later)."""
        result = []
        for k, (name, data) in enumerate(self.parts(event)):
            if (event.seq, k) <= after:
                continue
            result.append(frame(name, data, str(event.seq) if k == 0 else f"{event.seq}.{k}"))
        return result

    def _lc_event(
        self, kind: str, node: str | None, data: Any, *, name: str | None = None
    ) -> dict[str, Any]:
        return {
            "event": kind,
            "name": name or node or "LangGraph",
            "run_id": self.run_id,
            "tags": [f"graph:step:{node}"] if node else [],
            "metadata": self._meta(node),
            "data": data,
            "parent_ids": [],
        }

    def result(self) -> dict[str, Any]:
        """What /wait and /join answer: the final values, or `__error__` when the run failed."""
        if self.error is not None:
            return {"__error__": self.error}
        return self.values
