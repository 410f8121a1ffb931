"""A route dependency: 429 JSON before an SSE or join response starts when the tenant already
holds its cap of open streams on this replica (issue 13, point 4).

The LangGraph routes follow a run from inside the response body, where a refusal could only
break the stream after its 200; this answers first. (Two streams opened at the same instant at
the cap may still both pass; the second then ends at once with an error event.)
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from .auth.deps import Principal, current_principal


async def stream_room(
    request: Request, principal: Annotated[Principal, Depends(current_principal)]
) -> None:
    request.app.state.runs.open_streams.check(principal.tenant_id)
