"""Domain events that other systems publish (CloudEvents-shaped)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from .base import Event, JsonObject

# Source and type become subject tokens: agentbus.v1.events.<tenant>.<source>.<type>
EventToken = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9_-]*$")]


class DomainEvent(Event):
    """A fact from another system, e.g. a deployment, a commit or an incident.

    Follows CloudEvents 1.0 attribute names (`id`, `source`, `type`, `subject`, `time` as `ts`,
    `data`), with `tenant_id` added.
    """

    specversion: Literal["1.0"] = "1.0"
    source: EventToken
    type: EventToken
    subject: str | None = Field(default=None, max_length=512)
    datacontenttype: Literal["application/json"] = "application/json"
    data: JsonObject = Field(default_factory=dict)
