"""What `DefaultChatTransport` POSTs: `{id, messages: UIMessage[], trigger, messageId}` plus
whatever the app adds with the transport's `body` option (`assistant_id` is read here)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

ChatId = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]*$")]


class UIPart(BaseModel):
    # Parts of other types (files, tools, data) are kept but only text is sent to the run.
    model_config = ConfigDict(extra="allow")
    type: str = Field(min_length=1)
    text: str | None = None


class UIMessage(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: str = Field(max_length=256)
    role: Literal["system", "user", "assistant"]
    parts: list[UIPart] = Field(max_length=1000)

    def text(self) -> str:
        return "".join(p.text or "" for p in self.parts if p.type == "text")


class ChatRequest(BaseModel):
    # The transport's `body` option adds fields of the app's own: allowed, ignored.
    model_config = ConfigDict(extra="allow")
    id: ChatId
    messages: list[UIMessage] = Field(min_length=1, max_length=10_000)
    trigger: Literal["submit-message", "regenerate-message"] = "submit-message"
    messageId: str | None = Field(default=None, max_length=256)  # the wire name
    assistant_id: str = Field(default="agent", min_length=1, max_length=128)

    def question(self) -> str | None:
        """The text of the last user message: the turn to run (the thread holds the rest)."""
        for message in reversed(self.messages):
            if message.role == "user":
                text = message.text().strip()
                return text or None
        return None
