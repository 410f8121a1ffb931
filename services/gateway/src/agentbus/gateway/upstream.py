"""A service behind the gateway failed: the caller gets a 502 with a reason code, the log gets
the service's own words (issue 13, point 11: internal text stays out of response bodies)."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import TypeVar

from fastapi import HTTPException
from nats.aio.client import Client as NatsClient
from nats.errors import Error as NatsError
from pydantic import BaseModel

from agentbus.contracts import Contract, ErrorReply
from agentbus.runtime.traces import nats_span

log = logging.getLogger("agentbus.gateway.upstream")

_CODE = re.compile(r"[a-z][a-z0-9_]{0,39}")


class UpstreamError(HTTPException):
    """502 `{"detail": "<what> failed", "reason": "<code>"}` (see api._http_error)."""

    def __init__(
        self,
        what: str,
        reason: str,
        internal: str = "",
        status: int = 502,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.reason = reason if _CODE.fullmatch(reason) else "upstream_error"
        super().__init__(status, f"{what} failed ({self.reason})", headers=headers)
        log.warning(
            "upstream failure",
            extra={"what": what, "reason": self.reason, "upstream_error": internal[:2000]},
        )


Reply = TypeVar("Reply", bound=BaseModel)


async def request_reply(
    nc: NatsClient,
    subject: str,
    req: Contract,
    reply: type[Reply],
    what: str,
    timeout: float = 30,
    *,
    refusals: Mapping[str, int] | None = None,
    failure_status: int = 502,
) -> Reply:
    """One traced request to a service behind the gateway and its typed reply: 503 with
    Retry-After when no one answers (or the bus is away). An ErrorReply whose reason `refusals`
    names is the caller's problem: that status with the service's message; any other is
    `failure_status` with the service's reason code."""
    try:
        with nats_span(subject, "request") as headers:
            msg = await nc.request(
                subject, req.model_dump_json().encode(), timeout=timeout, headers=headers
            )
    except (NatsError, TimeoutError):
        raise HTTPException(
            503, f"{what}: the service is not available; try again", headers={"Retry-After": "1"}
        ) from None
    try:
        return reply.model_validate_json(msg.data)
    except ValueError:
        try:
            error = ErrorReply.model_validate_json(msg.data)
        except ValueError:
            raise UpstreamError(what, "unreadable_reply") from None
        status = (refusals or {}).get(error.reason)
        if status is not None:
            raise HTTPException(status, error.error) from None
        raise UpstreamError(what, error.reason, error.error, failure_status) from None


def runs_unavailable(internal: str) -> UpstreamError:
    """JetStream did not take a run (a stream or storage limit, no quorum): 503, retry later.
    The run was not admitted; nothing of it is left running or queued."""
    return UpstreamError(
        "Submitting the run", "runs_unavailable", internal, 503, headers={"Retry-After": "5"}
    )
