"""OpenAI chat messages as the local chat model reads them: the question (the last user message),
the tool results after it, and the context (a system message named "context", or a line starting
"Context:")."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

_CONTEXT_MARK = re.compile(r"^\s*context\s*:\s*", re.IGNORECASE | re.MULTILINE)


def _get(obj: Any, key: str, default: Any = None) -> Any:
    if isinstance(obj, dict):
        return obj.get(key, default)
    return getattr(obj, key, default)


def message_text(content: Any) -> str:
    """The text of a message's content: a string, or a list of parts (text parts are kept)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, str):
                parts.append(part)
            else:
                text = _get(part, "text")
                if isinstance(text, str):
                    parts.append(text)
        return "\n".join(parts)
    text = _get(content, "text")
    return text if isinstance(text, str) else str(content)


@dataclass
class _Conversation:
    question: str
    wants_tools: bool  # the last message is the user's
    tool_results: list[tuple[str, str]]  # (tool name, content) after the last user message
    context: list[str]
    all_texts: list[str]


def _parse(messages: Sequence[Any]) -> _Conversation:
    if not messages:
        raise LocalChatError(400, "local/extractive needs at least one message")
    call_names: dict[str, str] = {}
    last_user = -1
    texts: list[str] = []
    context: list[str] = []
    for i, m in enumerate(messages):
        role = _get(m, "role")
        text = message_text(_get(m, "content"))
        if text:
            texts.append(text)
        for tc in _get(m, "tool_calls") or []:
            fn = _get(tc, "function") or {}
            name = str(_get(fn, "name") or "")
            call_names[str(_get(tc, "id") or "")] = name
            texts.append(f"{name} {_get(fn, 'arguments') or ''}")
        if role == "user":
            last_user = i
        elif role in ("system", "developer") and text:
            if _get(m, "name") == "context":
                context.append(text)
            else:
                mark = _CONTEXT_MARK.search(text)
                if mark:
                    context.append(text[mark.end() :])
    if last_user < 0:
        raise LocalChatError(400, "local/extractive needs a user message to answer")
    results = []
    for m in messages[last_user + 1 :]:
        if _get(m, "role") in ("tool", "function"):
            name = _get(m, "name") or call_names.get(str(_get(m, "tool_call_id") or ""), "")
            results.append((str(name or "tool"), message_text(_get(m, "content"))))
    question = " ".join(message_text(_get(messages[last_user], "content")).split())
    return _Conversation(
        question=question,
        wants_tools=last_user == len(messages) - 1,
        tool_results=results,
        context=context,
        all_texts=texts,
    )


class LocalChatError(ValueError):
    """A request the model cannot serve; `status_code` is the HTTP status to report."""

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message
