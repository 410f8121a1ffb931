"""`GET /v1/models` (each assistant is a model) and `POST /v1/chat/completions`, streamed or not.

A request runs statelessly (a new thread per request, the whole `messages` as input), or on the
thread named by the `X-Agentbus-Thread-Id` header (created on first use; only the last user
message is sent, the thread holds the rest). The run's id and thread come back in the
`X-Agentbus-Run-Id` / `X-Agentbus-Thread-Id` headers: a dropped stream does not stop the run, and
`GET /api/v1/runs/{run_id}/stream` replays it.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Header, HTTPException, Request, Response
from fastapi.responses import JSONResponse

from agentbus.contracts import RunEvent

from ..auth.deps import CurrentPrincipal, Principal
from ..ratelimit import per_tenant
from ..sse import HEARTBEAT, sse_response
from ..turns import assistant_or_404, assistants, follow, runs_of, start_turn
from .encode import DONE, Completion, frame, model_entry
from .errors import OpenAIRoute, error_body, error_response
from .models import CompletionRequest
from .usage import RunUsage

router = APIRouter(prefix="/v1", tags=["openai"], route_class=OpenAIRoute)

Auth = CurrentPrincipal
THREAD_HEADER = "X-Agentbus-Thread-Id"
THREAD_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$")
# Assistants are the orchestrator's graphs, there from the start.
CREATED = 1767225600


async def _model(request: Request, principal: Principal, model: str) -> str:
    try:
        return await assistant_or_404(request, principal.tenant_id, model)
    except HTTPException as exc:
        if exc.status_code != 404:
            raise
        raise HTTPException(404, f"The model {model!r} does not exist") from None


@router.get("/models", summary="OpenAI: the assistants, as models")
async def list_models(request: Request, principal: Auth) -> dict[str, Any]:
    served = await assistants(request, principal.tenant_id)
    return {"object": "list", "data": [model_entry(a, CREATED) for a in served]}


@router.get("/models/{model}", summary="OpenAI: one assistant, as a model")
async def get_model(model: str, request: Request, principal: Auth) -> dict[str, Any]:
    return model_entry(await _model(request, principal, model), CREATED)


async def _stream(
    events: AsyncIterator[RunEvent | None],
    completion: Completion,
    usage: RunUsage | None,
) -> AsyncIterator[bytes]:
    with_usage = usage is not None
    yield frame(completion.first_chunk(with_usage))
    async for event in events:
        if event is None:
            yield HEARTBEAT
            continue
        if event.type != "end":
            if usage is not None:
                usage.add(event)
            chunk = completion.chunk(event, with_usage)
            if chunk is not None:
                yield frame(chunk)
            continue
        failure = completion.failure(event)
        if failure is not None:
            # OpenAI's own clients raise an APIError for an `error` payload in the stream.
            yield frame(error_body(500, failure))
            break
        yield frame(completion.last_chunk(event, with_usage))
        if usage is not None:
            yield frame(completion.usage_chunk(usage.usage()))
    yield DONE


@router.post(
    "/chat/completions",
    summary="OpenAI: run the conversation on an assistant (the model)",
    response_model=None,
)
async def chat_completions(
    request: Request,
    body: CompletionRequest,
    principal: Auth,
    thread_id: Annotated[str | None, Header(alias=THREAD_HEADER)] = None,
) -> Response:
    await per_tenant("stream" if body.stream else "chat")(request, principal)
    assistant_id = await _model(request, principal, body.model)
    if thread_id is not None and not THREAD_ID.match(thread_id):
        return error_response(400, f"{THREAD_HEADER} must be 1-128 of A-Z a-z 0-9 _ -")
    messages = body.run_messages(on_thread=thread_id is not None)
    if not any(m["role"] == "user" for m in messages):
        return error_response(400, "messages must hold a user message with text", "messages")
    runs = runs_of(request)
    # Summed from the run's own model_selection events (usage.py).
    usage = RunUsage() if body.include_usage or not body.stream else None
    turn = await start_turn(
        request,
        principal,
        messages=messages,
        thread_id=thread_id,
        assistant_id=assistant_id,
        title=messages[-1]["content"][:80],
        metadata={"api": "openai"},
    )
    events = await follow(runs, principal.tenant_id, turn.run_id)
    completion = Completion(turn.run_id, turn.thread_id, body.model)
    headers = {THREAD_HEADER: turn.thread_id, "X-Agentbus-Run-Id": turn.run_id}
    if body.stream:
        return sse_response(
            runs.streams.track("openai", _stream(events, completion, usage)), headers
        )
    assert usage is not None
    async for event in events:
        if event is None or event.type != "end":
            if event is not None:
                usage.add(event)
                completion.chunk(event, False)
            continue
        failure = completion.failure(event)
        if failure is not None:
            return error_response(500, failure, headers=headers)
        return JSONResponse(completion.whole(event, usage.usage()), headers=headers)
    return error_response(502, "The run ended without a result", headers=headers)
