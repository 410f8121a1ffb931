"""The gateway process: its broker (publishes runs, reads run events) and its HTTP API."""

from __future__ import annotations

import asyncpg
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

from agentbus.runtime.chassis import HttpServer, Service, StartupError, new_service
from agentbus.runtime.metrics import StreamMetrics

from . import __version__
from .a2a.push import PushConfigs, start_push, stop_push
from .api import create_api
from .auth import start_auth
from .langgraph.crons import start_scheduler, stop_scheduler
from .langgraph.followups import WebhookPolicy, start_followups, stop_followups
from .langgraph.runs import LangGraphRuns
from .limits import OpenStreams
from .ratelimit import open_limiter
from .routes.documents import StorageQuota
from .routes.evaluations import ensure_schema as ensure_evaluations_schema
from .routes.evaluations import router as evaluations_router
from .routes.history import HistoryStore
from .routes.history import router as history_router
from .routes.pipeline import ensure_schema as ensure_settings_schema
from .routes.pipeline import router as settings_router
from .routes.versions import ensure_schema as ensure_versions_schema
from .routes.versions import router as versions_router
from .routes.web import mount_web
from .routes.web import router as web_router
from .runs import RunGateway
from .settings import GatewaySettings
from .store import GatewayStore


def build(settings: GatewaySettings) -> Service:
    service = new_service(
        "gateway",
        __version__,
        settings,
        description="HTTP/SSE front door: submits runs, streams run events, accepts documents",
    )
    # Postgres holds users, tenants, API keys and threads.
    service.checks.update(service.probes.checks("postgres"))
    api = create_api(service, settings)
    # The web app's API, then the app itself at `/` (its fallback route goes last).
    api.include_router(web_router)
    # The RAG application's API (README "RAG application API").
    api.include_router(settings_router)
    api.include_router(history_router)
    api.include_router(versions_router)
    api.include_router(evaluations_router)
    mount_web(api, None, settings.traces_dir)
    streams = StreamMetrics(service.registry)

    async def start_stores() -> None:
        try:
            pool = await asyncpg.create_pool(settings.postgres_dsn, min_size=2, max_size=10)
        except Exception as exc:
            raise StartupError(f"cannot reach PostgreSQL: {exc}") from None
        assert pool is not None
        service.on_shutdown.append(pool.close)
        store = GatewayStore(pool)
        await store.ensure_schema()
        await ensure_settings_schema(pool)
        history = api.state.history = HistoryStore(pool)
        await history.ensure_schema()
        await ensure_versions_schema(pool)
        await ensure_evaluations_schema(pool)
        api.state.store = store
        api.state.storage_quota = StorageQuota(
            settings.max_documents_per_tenant, settings.max_stored_bytes_per_tenant
        )
        api.state.runs = RunGateway(
            service.connection,
            store,
            streams,
            heartbeat_s=settings.sse_heartbeat_s,
            open_streams=OpenStreams(settings.max_streams_per_tenant),
        )
        api.state.runs.on_end.append(history.complete)
        try:
            api.state.limiter = await open_limiter(
                service.connection.jetstream(), settings.rate_limits, service.registry
            )
        except ValueError as exc:
            raise StartupError(f"invalid AGENTBUS_RATE_LIMITS: {exc}") from None
        # Under `agentbus up` only: tenant `dev` and its key in <data_dir>/dev-api-key, so the
        # CLI works out of the box. A deployment creates its tenants itself.
        await start_auth(api, pool, settings, settings.data_dir, dev_tenant=settings.dev_tenant)
        # LangGraph crons: every replica's scheduler claims due ticks (exactly once per tick).
        langgraph = api.state.langgraph = LangGraphRuns(
            api.state.runs,
            store,
            WebhookPolicy(tuple(settings.webhook_allowed_urls)),
            history=history,
        )
        scheduler = await start_scheduler(langgraph.crons)
        service.on_shutdown.insert(0, lambda: stop_scheduler(scheduler))
        # Delayed runs and run-end webhooks / thread deletions, on every replica.
        followups = await start_followups(langgraph.followups)
        service.on_shutdown.insert(0, lambda: stop_followups(followups))
        # A2A push notifications: every replica delivers the due ones (same allow-list).
        pushes = api.state.a2a_push = PushConfigs(
            pool, api.state.runs, store, langgraph.followups.policy
        )
        push_task = await start_push(pushes)
        service.on_shutdown.insert(0, lambda: stop_push(push_task))

    service.on_startup.append(start_stores)
    # The HTTP span is the root of each request's trace; NATS hops continue it.
    # No span per ASGI send/receive: an SSE answer would add one per token.
    FastAPIInstrumentor.instrument_app(
        api, excluded_urls="healthz,readyz,metrics", exclude_spans=["receive", "send"]
    )
    service.http = HttpServer(api, settings.gateway_host, settings.gateway_port)
    return service
