"""Gateway settings (`AGENTBUS_*`; host and port are the shared `gateway_host`/`gateway_port`)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr

from agentbus.runtime.settings import Settings

from .auth import AuthSettings


class GatewaySettings(Settings, AuthSettings):
    cors_origins: list[str] = Field(
        default_factory=list, description="Origins allowed to call the API from a browser"
    )
    rate_limits: dict[str, str] = Field(
        default_factory=dict,
        description='Per route, e.g. {"chat": "60/minute"} (second/minute/hour/day); routes: '
        "chat (default 30/minute), stream (20/minute), register (10/hour), login (20/minute), "
        "login_account (per email), upload, analytics, list (unset routes keep their defaults)",
    )
    max_upload_bytes: int = Field(
        default=25 * 1024 * 1024, ge=1024, description="Largest document upload (413 above it)"
    )
    sse_heartbeat_s: float = Field(
        default=15.0,
        gt=0,
        le=300,
        description="Seconds of silence after which an SSE stream gets a keepalive comment",
    )
    readiness_detail: Literal["public", "operator"] = Field(
        default="operator",
        description="Who sees /readyz's detail (versions, instances, errors): everyone, or "
        "only callers with `Authorization: Bearer <operator_token>`; others get {ready}",
    )
    operator_token: SecretStr | None = Field(
        default=None, description="Bearer token for /readyz's detail"
    )
    public_metrics: bool = Field(
        default=True, description="Serve /metrics on the public port (else use the ops port)"
    )
    public_docs: bool = Field(
        default=True, description="Serve /docs, /redoc and /openapi.json on the public port"
    )
    max_documents_per_tenant: int = Field(
        default=10_000, ge=1, description="Documents one tenant may store (413 past it)"
    )
    max_stored_bytes_per_tenant: int = Field(
        default=10 * 1024**3, ge=1, description="Uploaded bytes one tenant may store (413 past it)"
    )
    max_streams_per_tenant: int = Field(
        default=1000,
        ge=1,
        description="Open SSE streams one tenant may hold on one gateway replica (429 past it)",
    )
    max_body_bytes: int = Field(
        default=1_048_576, ge=1024, description="Largest JSON request body (413 above it)"
    )
    webhook_allowed_urls: list[str] = Field(
        default_factory=list,
        description="Where LangGraph run webhooks may POST: entries scheme://host[:port][/path] "
        "(no port: any port); empty refuses every webhook (422). An allow-list, because the "
        "gateway posts from inside the network (SSRF otherwise)",
    )
    dev_tenant: bool = Field(
        default=False,
        description="Create tenant `dev` with an admin API key in <data_dir>/dev-api-key at start "
        "(`agentbus up` turns it on for the CLI; never in production)",
    )
