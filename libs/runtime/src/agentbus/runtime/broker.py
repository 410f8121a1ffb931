"""The one way a service gets a FastStream NATS broker: telemetry and metrics installed."""

from __future__ import annotations

import logging
from functools import reduce
from operator import or_
from typing import Any

from faststream.nats import NatsBroker
from faststream.nats.opentelemetry import NatsTelemetryMiddleware
from faststream.nats.prometheus import NatsPrometheusMiddleware
from faststream.security import BaseSecurity
from opentelemetry import trace
from prometheus_client import CollectorRegistry

from agentbus.contracts import SUBJECTS
from agentbus.contracts import subjects as s
from agentbus.contracts.permissions import inbox_prefix

from .settings import Settings


def _security(settings: Settings) -> BaseSecurity | None:
    from faststream.nats import NatsCredentials, NatsUserPassword

    if settings.nats_creds is not None:
        return NatsCredentials(str(settings.nats_creds))
    if settings.nats_user:
        password = settings.nats_password.get_secret_value() if settings.nats_password else ""
        return NatsUserPassword(settings.nats_user, password)
    return None


def make_broker(service: str, settings: Settings, registry: CollectorRegistry) -> NatsBroker:
    """A broker for `service`, labelled in NATS monitoring as `agentbus-<service>`, with what it
    publishes already in its AsyncAPI document (`document_publishers`)."""
    broker = NatsBroker(
        settings.nats_servers,
        name=f"agentbus-{service}",
        # Replies and JetStream answers travel on this service's own inbox, the only one its
        # NATS user may subscribe to (deploy/nats/nats-auth.conf).
        inbox_prefix=inbox_prefix(service),
        connect_timeout=max(1, round(settings.nats_connect_timeout_s)),
        # Reconnect for ever once connected: a NATS restart must not kill a worker. The first
        # connect is checked separately (see service.connect) so bad URLs still fail fast.
        max_reconnect_attempts=-1,
        reconnect_time_wait=1,
        graceful_timeout=settings.shutdown_timeout_s,
        security=_security(settings),
        middlewares=(
            NatsTelemetryMiddleware(tracer_provider=trace.get_tracer_provider()),
            NatsPrometheusMiddleware(registry=registry, app_name=f"agentbus-{service}"),
        ),
        logger=logging.getLogger(f"agentbus.{service}.broker"),
        description=f"Agentbus {service} service",
    )
    document_publishers(broker, service)
    return broker


def document_publishers(broker: NatsBroker, service: str) -> None:
    """Declare every subject the catalog says `service` publishes (or requests on) as a broker
    publisher, so the AsyncAPI document shows the channels the service sends on with their
    payload contracts. Services publish through their own clients; these carry no traffic."""
    for spec in SUBJECTS:
        if service not in spec.producers:
            continue
        schema: Any = reduce(or_, spec.payloads) if spec.payloads else None
        name = spec.subject.removeprefix(f"{s.PREFIX}.")
        broker.publisher(
            spec.subject, title=f"{name}:send", description=spec.description, schema=schema
        )


def pull_inbox(service: str) -> bytes:
    """`inbox_prefix` for a FastStream pull subscriber: FastStream passes the shared `_INBOX.`
    to its fetches unless told, which the service's NATS user may not subscribe to."""
    return f"{inbox_prefix(service)}.".encode()
