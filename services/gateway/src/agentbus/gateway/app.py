"""The gateway process: its broker (publishes runs, reads run events) and its HTTP API."""

from __future__ import annotations

from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

from agentbus.runtime.service import HttpServer, Service, new_service

from . import __version__
from .api import create_api
from .settings import GatewaySettings


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
    # The HTTP span is the root of each request's trace; NATS hops continue it.
    FastAPIInstrumentor.instrument_app(api, excluded_urls="healthz,readyz,metrics")
    service.http = HttpServer(api, settings.gateway_host, settings.gateway_port)
    return service
