"""The tools a chat request offers, as the local chat model sees them: their text and facets,
which of them is a free-text search, their argument types, and a required argument's fallback."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .messages import _get
from .text import _NUMBER

QUERY_PARAMS = frozenset(
    {"query", "question", "text", "q", "prompt", "input", "search", "search_query", "keywords"}
)


@dataclass(frozen=True)
class ToolCall:
    name: str
    arguments: dict[str, Any]
    id: str = field(default_factory=lambda: f"call_{uuid.uuid4().hex[:24]}")

    def openai(self, index: int | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": json.dumps(self.arguments)},
        }
        if index is not None:
            out["index"] = index
        return out


def _types(schema: dict[str, Any]) -> set[str]:
    t = schema.get("type")
    if isinstance(t, str):
        return {t}
    if isinstance(t, list):
        return {str(x) for x in t}
    found: set[str] = set()
    for alt in schema.get("anyOf") or schema.get("oneOf") or []:
        if isinstance(alt, dict):
            found |= _types(alt)
    return found or {"string"}


@dataclass
class _Tool:
    name: str
    description: str
    properties: dict[str, dict[str, Any]]
    required: list[str]

    @property
    def text(self) -> str:
        params = "; ".join(
            f"{n}: {p.get('description', '')}".strip(": ") for n, p in self.properties.items()
        )
        head = f"{self.name.replace('_', ' ')}: {self.description}".strip(": ")
        return f"{head} {params}".strip()

    @property
    def facets(self) -> list[str]:
        out: list[str] = []
        for raw in re.split(r"(?<=[.:;!?])\s+", self.description):
            part = raw.strip(" .:;")
            if not part:
                continue
            if "," in part or " or " in part:
                out += [x.strip(" .") for x in re.split(r",\s*|\s+or\s+", part) if x.strip(" .")]
            out.append(part)
        return list(dict.fromkeys(out)) or [self.name.replace("_", " ")]

    @property
    def is_search(self) -> bool:
        return any(
            n.lower() in QUERY_PARAMS and "string" in _types(self.properties.get(n, {}))
            for n in self.required
        )


def _tools(raw: Any) -> list[_Tool]:
    out = []
    for item in raw or []:
        fn = _get(item, "function") if _get(item, "type", "function") == "function" else None
        fn = fn if fn is not None else item
        name = _get(fn, "name")
        if not name:
            continue
        params = _get(fn, "parameters") or {}
        props = params.get("properties") or {} if isinstance(params, dict) else {}
        required = params.get("required") or [] if isinstance(params, dict) else []
        out.append(
            _Tool(
                name=str(name),
                description=str(_get(fn, "description") or ""),
                properties={str(k): v for k, v in props.items() if isinstance(v, dict)},
                required=[str(r) for r in required],
            )
        )
    return out


def _dot(a: Sequence[float], b: Sequence[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=False))


def _enum_glosses(values: list[Any], description: str) -> dict[str, str]:
    """`value (gloss)` or `value: gloss` in a parameter description, up to the next value."""
    spans = []
    for v in values:
        m = re.search(rf"(?<!\w){re.escape(str(v))}(?!\w)", description, re.IGNORECASE)
        if m:
            spans.append((m.start(), m.end(), str(v)))
    spans.sort()
    out = {}
    for i, (_, end, v) in enumerate(spans):
        stop = spans[i + 1][0] if i + 1 < len(spans) else len(description)
        out[v] = description[end:stop].strip(" ,;:.()-—")
    return out


def _required_fallback(types: set[str], schema: dict[str, Any], clause: str) -> Any:
    if types & {"integer", "number"}:
        numbers = _NUMBER.findall(clause)
        if numbers:
            value = float(numbers[0])
            return int(value) if "integer" in types else value
        minimum = schema.get("minimum")
        return minimum if minimum is not None else 1
    if "boolean" in types:
        return False
    if "array" in types:
        return []
    if "object" in types:
        return {}
    return clause
