"""The `/mcp` endpoint: the official MCP SDK's streamable HTTP transport, stateless (any gateway
replica answers any request), behind the gateway's own credentials.

Every request is authenticated like the rest of the API (`Authorization: Bearer <API key or
access token>` or `x-api-key`); the principal rides in the request's state to the handlers.
Tools run turns through the same path as the native API and report the run's steps as progress
when the caller asks for it; resources are the tenant's documents as text; prompts pack the
tenant's passages for the client's own model.
"""

from __future__ import annotations

import asyncio
from typing import Any

import mcp_types as types
from fastapi import HTTPException
from mcp.server import Server, ServerRequestContext
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.shared.exceptions import MCPError
from mcp_types.jsonrpc import INTERNAL_ERROR, INVALID_REQUEST
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse
from starlette.types import Receive, Scope, Send

from .. import __version__
from ..auth.deps import Principal, auth_of, current_principal
from ..ratelimit import per_tenant
from ..turns import assistants
from .prompts import PROMPTS, get_prompt
from .resources import TEMPLATES, list_resources, read_resource
from .tools import (
    SEARCH,
    Progress,
    ask,
    error,
    input_schemas,
    list_tools,
    run_graph,
    search,
    takes_message,
)

INSTRUCTIONS = (
    "Agentbus assistants as tools: call one with its graph's input, or a `message` when it "
    "takes one (and a `thread_id` to continue a conversation); `search_documents` searches "
    "the tenant's documents directly. The documents are resources "
    "(agentbus://documents/{id}, /pages/{n}); the prompts pack passages for your own model."
)


def _request(ctx: ServerRequestContext[Any, Any]) -> tuple[Request, Principal]:
    request = ctx.request
    assert isinstance(request, Request)
    return request, request.state.principal


def _progress(ctx: ServerRequestContext[Any, Any]) -> Progress:
    """Progress notifications on the request's own stream; the SDK sends none when the caller
    gave no progress token."""

    async def send(progress: float, message: str) -> None:
        await ctx.session.report_progress(progress, None, message)

    return send


async def _list_tools(
    ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams | None
) -> types.ListToolsResult:
    request, principal = _request(ctx)
    served = await assistants(request, principal.tenant_id)
    schemas = await input_schemas(request, principal.tenant_id, served)
    return types.ListToolsResult(tools=list_tools(served, schemas))


async def _call_tool(
    ctx: ServerRequestContext[Any, Any], params: types.CallToolRequestParams
) -> types.CallToolResult:
    request, principal = _request(ctx)
    arguments = dict(params.arguments or {})
    try:
        if params.name == SEARCH:
            return await search(request, principal, arguments)
        served = await assistants(request, principal.tenant_id)
        if params.name in served:
            schema = (await input_schemas(request, principal.tenant_id, {params.name: ""}))[
                params.name
            ]
            progress = _progress(ctx)
            if takes_message(schema, arguments) or schema.get("required") == ["message"]:
                return await ask(request, principal, params.name, arguments, progress)
            return await run_graph(request, principal, params.name, arguments, progress)
    except HTTPException as exc:
        # Refusals (rate limit, unknown thread, a service down) are tool errors the model reads.
        return error(f"{exc.status_code}: {exc.detail}")
    return error(f"Unknown tool {params.name!r}")


async def _list_resources(
    ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams | None
) -> types.ListResourcesResult:
    request, principal = _request(ctx)
    await _limited(request, principal)
    return await list_resources(request, principal.tenant_id, params.cursor if params else None)


async def _list_templates(
    ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams | None
) -> types.ListResourceTemplatesResult:
    return types.ListResourceTemplatesResult(resource_templates=list(TEMPLATES))


async def _read_resource(
    ctx: ServerRequestContext[Any, Any], params: types.ReadResourceRequestParams
) -> types.ReadResourceResult:
    request, principal = _request(ctx)
    await _limited(request, principal)
    try:
        return await read_resource(request, principal.tenant_id, params.uri)
    except HTTPException as exc:
        raise _refused(exc) from None


async def _list_prompts(
    ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams | None
) -> types.ListPromptsResult:
    return types.ListPromptsResult(prompts=list(PROMPTS))


async def _get_prompt(
    ctx: ServerRequestContext[Any, Any], params: types.GetPromptRequestParams
) -> types.GetPromptResult:
    request, principal = _request(ctx)
    try:
        return await get_prompt(request, principal, params.name, dict(params.arguments or {}))
    except HTTPException as exc:
        raise _refused(exc) from None


async def _limited(request: Request, principal: Principal) -> None:
    try:
        await per_tenant("list")(request, principal)
    except HTTPException as exc:
        raise _refused(exc) from None


def _refused(exc: HTTPException) -> MCPError:
    """A refusal (rate limit, a service down) as a JSON-RPC error the client raises; tools say
    the same as tool errors instead, which the model reads."""
    return MCPError(
        INTERNAL_ERROR if exc.status_code >= 500 else INVALID_REQUEST,
        f"{exc.status_code}: {exc.detail}",
    )


def _credentials(conn: HTTPConnection) -> tuple[str | None, str | None]:
    scheme, _, token = conn.headers.get("authorization", "").partition(" ")
    bearer = token.strip() if scheme.lower() == "bearer" and token.strip() else None
    return bearer, conn.headers.get("x-api-key") or None


class McpEndpoint:
    """An ASGI app for the `/mcp` route; the SDK's session manager runs in a task of its own
    (its task group must be entered and left in one task), started by the first request."""

    def __init__(self) -> None:
        self.server: Server[Any] = Server(
            "agentbus",
            version=__version__,
            instructions=INSTRUCTIONS,
            on_list_tools=_list_tools,
            on_call_tool=_call_tool,
            on_list_resources=_list_resources,
            on_list_resource_templates=_list_templates,
            on_read_resource=_read_resource,
            on_list_prompts=_list_prompts,
            on_get_prompt=_get_prompt,
        )
        self.manager = StreamableHTTPSessionManager(self.server, stateless=True)
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self._stop = asyncio.Event()

    async def _run(self) -> None:
        async with self.manager.run():
            self._ready.set()
            await self._stop.wait()

    async def _started(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="mcp-session-manager")
        ready = asyncio.create_task(self._ready.wait())
        await asyncio.wait([ready, self._task], return_when=asyncio.FIRST_COMPLETED)
        if not self._ready.is_set():
            ready.cancel()
            self._task.result()  # raises what stopped it

    async def stop(self) -> None:
        if self._task is not None:
            self._stop.set()
            await self._task

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        conn = HTTPConnection(scope)
        bearer, api_key = _credentials(conn)
        try:
            # Sets conn.state.principal, which the tool handlers read.
            await current_principal(conn, await auth_of(conn), bearer, api_key)
        except HTTPException as exc:
            response = JSONResponse(
                {"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers
            )
            await response(scope, receive, send)
            return
        await self._started()
        await self.manager.handle_request(scope, receive, send)
