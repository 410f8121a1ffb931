"""The request of `POST /v1/chat/completions`: the fields that mean something to a run.

Sampling and tool parameters (temperature, tools, response_format, ...) are accepted and ignored:
the assistant's graph picks its models and tools itself.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ..turns import text_of


class Message(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None

    def text(self) -> str:
        return text_of(self.content)


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")
    include_usage: bool = False


class CompletionRequest(BaseModel):
    model_config = ConfigDict(extra="allow")
    model: str = Field(min_length=1, max_length=128)
    messages: list[Message] = Field(min_length=1, max_length=10_000)
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int = Field(default=1, ge=1, le=1)
    user: str | None = Field(default=None, max_length=256)

    def run_messages(self, on_thread: bool) -> list[dict[str, Any]]:
        """The graph's input: the whole conversation, or on a thread (which holds the earlier
        turns) just the last user message. Roles the graphs do not know are left out."""
        kept = [
            {"role": "system" if m.role == "developer" else m.role, "content": m.text()}
            for m in self.messages
            if m.role in ("system", "developer", "user", "assistant") and m.text()
        ]
        if on_thread:
            users = [m for m in kept if m["role"] == "user"]
            return users[-1:]
        return kept

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)
