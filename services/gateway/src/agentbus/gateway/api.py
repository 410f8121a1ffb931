"""The gateway's FastAPI app: health and readiness, error bodies, middlewares, and the routers
of auth, the protocol adapters, chat, documents and analytics (app.py adds the RAG application's
and the web app's, then the web app itself, whose fallback route must come last)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from prometheus_client import make_asgi_app
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Route

from agentbus.runtime.chassis import Service
from agentbus.runtime.health import Readiness, readiness

from . import __version__
from .a2a import router as a2a_router
from .aisdk import router as aisdk_router
from .auth import router as auth_router
from .headers import SecurityHeaders
from .http_metrics import HttpMetrics
from .langgraph import router as langgraph_router
from .limits import BodyLimits
from .mcp import McpEndpoint
from .openai import router as openai_router
from .readiness import CachedReadiness, may_see_detail
from .routes.analytics import router as analytics_router
from .routes.documents import router as documents_router
from .routes.native import router as native_router
from .settings import GatewaySettings
from .upstream import UpstreamError


def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {"field": ".".join(str(p) for p in err["loc"] if p != "body"), "message": err["msg"]}
        for err in exc.errors()
    ]
    return JSONResponse({"detail": "Validation error", "errors": errors}, status_code=422)


def _http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    body: dict[str, Any] = {"detail": exc.detail}
    if isinstance(exc, UpstreamError):
        body["reason"] = exc.reason
    return JSONResponse(body, status_code=exc.status_code, headers=exc.headers or None)


def create_api(service: Service, settings: GatewaySettings) -> FastAPI:
    api = FastAPI(
        title="Agentbus gateway",
        version=__version__,
        description="HTTP and Server-Sent Events front door of the Agentbus platform.",
        docs_url="/docs" if settings.public_docs else None,
        redoc_url="/redoc" if settings.public_docs else None,
        openapi_url="/openapi.json" if settings.public_docs else None,
    )
    api.add_exception_handler(RequestValidationError, _validation_error)
    api.add_exception_handler(StarletteHTTPException, _http_error)
    if settings.cors_origins:
        api.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["*"],
            allow_headers=["*"],
            expose_headers=["Content-Location", "Location", "Retry-After"],
        )
    if settings.public_metrics:
        api.mount("/metrics", make_asgi_app(registry=service.registry))
    api.add_middleware(
        BodyLimits,
        max_body_bytes=settings.max_body_bytes,
        max_upload_bytes=settings.max_upload_bytes,
    )
    # Outermost: every answer gets them, the guards' and the error handlers' included.
    api.add_middleware(SecurityHeaders)
    # Outside even that: every request is counted and timed, refused ones included.
    api.add_middleware(HttpMetrics, registry=service.registry)
    api.include_router(auth_router)
    api.include_router(native_router)
    api.include_router(documents_router)
    api.include_router(analytics_router)
    # LangGraph Agent Server paths at the root: the SDK takes the base URL.
    api.include_router(langgraph_router)
    # Adapters for other clients' protocols, each over the same runs (see the README table).
    api.include_router(aisdk_router)
    api.include_router(openai_router)
    api.include_router(a2a_router)
    mcp = McpEndpoint()
    api.router.routes.append(Route("/mcp", mcp, methods=["GET", "POST", "DELETE"]))
    service.on_shutdown.append(mcp.stop)

    @api.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, Any]:
        """The process is alive and serving HTTP."""
        return {"status": "ok", "service": "gateway", "version": __version__}

    @api.get(
        "/readyz",
        tags=["health"],
        response_model=Readiness,
        responses={503: {"model": Readiness, "description": "Something is not ready"}},
    )
    async def readyz(request: Request) -> JSONResponse:
        """Every engine and every service reachable; 503 if not. The detail naming what is not
        needs the operator token (or `readiness_detail=public`)."""
        report = await cached.report()
        status = 200 if report.ready else 503
        token = settings.operator_token.get_secret_value() if settings.operator_token else None
        auth = request.headers.get("authorization")
        if may_see_detail(auth, settings.readiness_detail, token):
            return JSONResponse(report.model_dump(), status_code=status)
        return JSONResponse({"ready": report.ready}, status_code=status)

    async def _check() -> Readiness:
        return await readiness(
            service.connection, settings, service.probes, self_health=await service.health()
        )

    cached = CachedReadiness(_check)

    return api
