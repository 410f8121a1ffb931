"""`POST /api/chat` (useChat's default path) and `GET /api/chat/{chat_id}/stream` (its resume).

The chat id is the thread id (created on first use); each POST runs the last user message as one
turn through the same path as the native API. A dropped response does not stop the run: the resume
replays it from its first event, as `DefaultChatTransport` expects (`resumeStreamIsReplay`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from fastapi.responses import StreamingResponse

from agentbus.contracts import RunEvent

from ..auth.deps import CurrentPrincipal, Principal
from ..ratelimit import per_tenant
from ..runs import RunGateway
from ..sse import HEARTBEAT, sse_response
from ..turns import active_run, assistant_or_404, follow, runs_of, start_turn, store_of
from .chunks import DONE, ChunkEncoder, frame
from .models import ChatId, ChatRequest

router = APIRouter(prefix="/api/chat", tags=["ai-sdk"])

Auth = CurrentPrincipal

HEADERS = {"x-vercel-ai-ui-message-stream": "v1"}


async def _body(
    events: AsyncIterator[RunEvent | None], encoder: ChunkEncoder
) -> AsyncIterator[bytes]:
    yield b"".join(map(frame, encoder.start()))
    async for event in events:
        if event is None:
            yield HEARTBEAT
            continue
        # The chunks of one event in one write: fewer sends, less gateway CPU per run.
        chunks = encoder.chunks(event)
        if chunks:
            yield b"".join(map(frame, chunks))
    yield DONE


async def _stream(
    request: Request, runs: RunGateway, principal: Principal, run_id: str, thread_id: str
) -> StreamingResponse:
    events = await follow(runs, principal.tenant_id, run_id)
    encoder = ChunkEncoder(run_id, thread_id, str(request.base_url) + "api/v1/documents/")
    return sse_response(
        runs.streams.track("aisdk", _body(events, encoder)),
        {**HEADERS, "Content-Location": f"/api/chat/{thread_id}/stream"},
    )


@router.post(
    "",
    summary="AI SDK useChat: run the last user message, stream UI message chunks",
    dependencies=[Depends(per_tenant("stream"))],
)
async def chat(request: Request, req: ChatRequest, principal: Auth) -> StreamingResponse:
    question = req.question()
    if question is None:
        raise HTTPException(422, "The messages hold no user message with text to answer")
    await assistant_or_404(request, principal.tenant_id, req.assistant_id)
    # submit-message and regenerate-message both run the last user message on the thread.
    turn = await start_turn(
        request,
        principal,
        messages=[{"role": "user", "content": question}],
        thread_id=req.id,
        assistant_id=req.assistant_id,
        title=question[:80],
        metadata={"api": "ai-sdk", "trigger": req.trigger},
    )
    return await _stream(request, runs_of(request), principal, turn.run_id, turn.thread_id)


@router.get(
    "/{chat_id}/stream",
    summary="AI SDK useChat resume: the chat's active run from its start, 204 when none",
    dependencies=[Depends(per_tenant("stream"))],
    response_model=None,
)
async def resume(chat_id: ChatId, request: Request, principal: Auth) -> Response:
    runs = runs_of(request)
    run_id = await active_run(runs, store_of(request), principal.tenant_id, chat_id)
    if run_id is None:
        return Response(status_code=204)
    return await _stream(request, runs, principal, run_id, chat_id)
