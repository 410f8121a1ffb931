"""Base classes and field types shared by every contract.

Models are strict and closed (`extra="forbid"`) so a producer's typo is a reject, not silent data
loss. Timestamps are the one place strictness is relaxed: on the bus they travel as ISO-8601
strings inside JSON, and FastStream validates the decoded dict in Python mode, where a strict
datetime would refuse a string.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

# Tenant ids appear as subject tokens (agentbus.v1.events.<tenant>...), so they must be valid,
# wildcard-free NATS tokens as well as safe keys in every store.
TenantId = Annotated[
    str,
    Field(
        min_length=1,
        max_length=63,
        pattern=r"^[a-z0-9][a-z0-9_-]*$",
        description="Tenant that owns this message; every query filters by it.",
    ),
]

# Ids that end up in subjects (run ids, document ids) follow the same token rules.
SubjectToken = Annotated[
    str,
    Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]*$"),
]

Timestamp = Annotated[datetime, Field(strict=False)]

JsonObject = dict[str, Any]


def new_id() -> str:
    """A random, subject-safe identifier (32 hex chars)."""
    return uuid.uuid4().hex


def utcnow() -> datetime:
    return datetime.now(UTC)


class Contract(BaseModel):
    """Every message body on the bus."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class TenantContract(Contract):
    """A message that belongs to a tenant: requests and replies."""

    tenant_id: TenantId


class Event(TenantContract):
    """A fact that happened: stored in a JetStream stream, so it carries an id and a time."""

    id: str = Field(default_factory=new_id, min_length=1, max_length=128)
    ts: Timestamp = Field(default_factory=utcnow, description="When the fact happened (UTC).")


class ErrorReply(Contract):
    """The reply of any request/reply subject to a request that does not match its contract.

    Carries no tenant: the request could not be read far enough to know it.
    """

    error: str = Field(min_length=1)
    reason: str = Field(description="Short code, e.g. `invalid_json` or `schema`")
