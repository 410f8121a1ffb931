"""A service behind the gateway failed: the caller gets a 502 with a reason code, the log gets
the service's own words (issue 13, point 11: internal text stays out of response bodies)."""

from __future__ import annotations

import logging
import re

from fastapi import HTTPException

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


def runs_unavailable(internal: str) -> UpstreamError:
    """JetStream did not take a run (a stream or storage limit, no quorum): 503, retry later.
    The run was not admitted; nothing of it is left running or queued."""
    return UpstreamError(
        "Submitting the run", "runs_unavailable", internal, 503, headers={"Retry-After": "5"}
    )
