"""What a finished run records for evaluations: its question, final answer and contexts.

`RunFinished` carries them (truncated to the contract's limits) so analytics can list recorded
runs and `agentbus eval` can judge them without reading the orchestrator's checkpoints.

- question: the last human message of the run's input (`role` user/human or `type` human);
- answer: the last assistant message of the thread's state when it has no tool calls (the
  final answer), only for a run that succeeded;
- contexts: the retrieved snippets the answer could use: each hit's text of every tool result
  after the last human message (search hits), other rows as compact JSON, at most
  `MAX_CONTEXTS` of `CONTEXT_CHARS` characters.
"""

from __future__ import annotations

import json
from typing import Any

from agentbus.contracts.telemetry import TEXT_LIMIT

MAX_CONTEXTS = 20  # RunFinished.contexts max_length
CONTEXT_CHARS = 2000

_HUMAN = ("user", "human")
_AI = ("assistant", "ai")


def _text(content: Any) -> str:
    """A message's text: a string, or the text parts of a list of parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p if isinstance(p, str) else p.get("text") for p in content if p]
        return "\n".join(p for p in parts if isinstance(p, str))
    return ""


def _role(message: Any) -> str:
    if not isinstance(message, dict):
        return ""
    return str(message.get("role") or message.get("type") or "")


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _snippets(content: Any) -> list[str]:
    try:
        result = json.loads(_text(content))
    except ValueError:
        text = _text(content).strip()
        return [text] if text else []
    if not isinstance(result, dict):
        return []
    out: list[str] = []
    for hit in result.get("hits") or []:
        if isinstance(hit, dict) and isinstance(hit.get("text"), str) and hit["text"].strip():
            out.append(hit["text"])
    rows = result.get("rows") or []
    columns = result.get("columns") or []
    for row in rows if isinstance(rows, list) else []:
        paired = isinstance(row, list) and len(row) == len(columns)
        named = dict(zip(columns, row, strict=True)) if paired else row
        out.append(json.dumps(named, default=str, ensure_ascii=False))
    return out


def question_of(run_input: Any) -> str | None:
    messages = run_input.get("messages") if isinstance(run_input, dict) else None
    for message in reversed(messages if isinstance(messages, list) else []):
        if _role(message) in _HUMAN:
            text = _text(message.get("content")).strip()
            return _clip(text, TEXT_LIMIT) if text else None
    return None


def answer_and_contexts(values: Any) -> tuple[str | None, list[str]]:
    messages = values.get("messages") if isinstance(values, dict) else None
    if not isinstance(messages, list) or not messages:
        return None, []
    last_human = max((i for i, m in enumerate(messages) if _role(m) in _HUMAN), default=-1)
    contexts: list[str] = []
    for message in messages[last_human + 1 :]:
        if _role(message) == "tool":
            contexts.extend(_snippets(message.get("content")))
    answer = None
    final = messages[-1]
    if _role(final) in _AI and not final.get("tool_calls"):
        answer = _text(final.get("content")).strip() or None
    contexts = [_clip(c, CONTEXT_CHARS) for c in contexts[:MAX_CONTEXTS]]
    return (_clip(answer, TEXT_LIMIT) if answer else None), contexts
