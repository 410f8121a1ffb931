"""A route dependency: 429 JSON before an SSE or join response starts when the tenant already
holds its cap of open streams on this replica (issue 13, point 4).

The LangGraph routes follow a run from inside the response body, where a refusal could only
break the stream after its 200; this answers first, and reserves the place the stream claims
once it starts (`OpenStreams.reserve`), so two requests at the same instant at the cap cannot
both pass.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from fastapi import Depends, Request

from .auth.deps import CurrentPrincipal


async def _stream_room(request: Request, principal: CurrentPrincipal) -> AsyncIterator[None]:
    streams = request.app.state.runs.open_streams
    streams.reserve(principal.tenant_id)
    try:
        yield
    except BaseException:
        # Refused before its stream started (404, 422, a rate limit): the place is free again.
        streams.unreserve(principal.tenant_id)
        raise


# Ends when the route function returns, before the body streams: only the route's own refusals
# give the place back; the stream claims it once it starts.
stream_room = Depends(_stream_room, scope="function")
