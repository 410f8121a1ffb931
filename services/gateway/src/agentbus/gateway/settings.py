"""Gateway settings (`AGENTBUS_*`; host and port are the shared `gateway_host`/`gateway_port`)."""

from __future__ import annotations

from pydantic import Field

from agentbus.runtime.settings import Settings


class GatewaySettings(Settings):
    cors_origins: list[str] = Field(
        default_factory=list, description="Origins allowed to call the API from a browser"
    )
