"""Settings every service shares, read from `AGENTBUS_*` environment variables (and `.env`).

Each service subclasses `Settings` with its own fields; `.env.example` at the repository root
documents every variable.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Literal, TypeVar

from pydantic import Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="AGENTBUS_", env_file=".env", extra="ignore", validate_default=True
    )

    data_dir: Path = Field(default=Path("var"), description="Engine data, traces, logs, run state")

    nats_url: str = Field(
        default="nats://127.0.0.1:4222",
        pattern=r"^(nats|tls|ws|wss)://[^,\s]+(,(nats|tls|ws|wss)://[^,\s]+)*$",
        description="One server, or several of one cluster separated by commas",
    )
    nats_replicas: int = Field(
        default=1,
        ge=1,
        le=5,
        description="Replicas of the streams and buckets this platform creates (3 on a cluster)",
    )
    documents_max_bytes: int = Field(
        default=10 * 1024**3,
        ge=1024 * 1024,
        description="Most bytes the `documents` object bucket holds (uploads past it get 413); "
        "JetStream refuses a limit larger than its disk can hold",
    )
    nats_user: str | None = None
    nats_password: SecretStr | None = None
    nats_creds: Path | None = Field(default=None, description="NATS .creds file (JWT + NKey)")
    nats_connect_timeout_s: float = Field(default=3.0, gt=0)

    @property
    def nats_servers(self) -> list[str]:
        """The servers of `nats_url`: a client connects to any and fails over to the others."""
        return self.nats_url.split(",")

    postgres_dsn: str = Field(
        default="postgresql://postgres@127.0.0.1:5432/agentbus", pattern=r"^postgres(ql)?://"
    )
    graph_url: str = Field(default="bolt://127.0.0.1:7687", pattern=r"^(bolt|neo4j)(\+s|\+ssc)?://")
    graph_user: str = ""
    graph_password: SecretStr = SecretStr("")
    graph_server: Literal["neo4j", "falkordb"] = Field(
        default="neo4j",
        description="falkordb for the embedded graph: its drivers close without Bolt GOODBYE",
    )
    clickhouse_dsn: str = Field(
        default="", description="http(s)://... for a server; empty = embedded chDB under data_dir"
    )

    diagnostic_assistants: bool = Field(
        default=False,
        description="Serve the diagnostic assistants (`steps`: sleeps for a caller-chosen delay); "
        "off in production, on under `agentbus up` and in tests",
    )

    gateway_host: str = "127.0.0.1"
    forwarded_allow_ips: str = Field(
        default="127.0.0.1",
        description="Proxies (IPs or CIDRs, comma-separated) whose X-Forwarded-For and "
        "X-Forwarded-Proto are believed: set your ingress's addresses; '*' only when nothing "
        "else can reach the port",
    )
    gateway_port: int = Field(default=8080, ge=1, le=65535)

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["json", "text"] = "json"
    ops_host: str = Field(default="127.0.0.1", description="Bind address of the ops port")
    ops_port: int = Field(
        default=0,
        ge=0,
        le=65535,
        description="HTTP port of a bus service for /healthz, /readyz, /metrics; 0 = off",
    )
    health_timeout_s: float = Field(default=2.0, gt=0, description="Per-check readiness timeout")
    shutdown_timeout_s: float = Field(default=15.0, gt=0, description="Drain budget on SIGTERM")
    instance: str = Field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}")

    @model_validator(mode="after")
    def _derived(self) -> Settings:
        # Resolve data_dir once so every component agrees on absolute paths.
        object.__setattr__(self, "data_dir", self.data_dir.expanduser().absolute())
        if not self.clickhouse_dsn:
            object.__setattr__(self, "clickhouse_dsn", f"chdb://{self.data_dir / 'clickhouse'}")
        return self

    @property
    def traces_dir(self) -> Path:
        return self.data_dir / "traces"


def nats_auth(settings: Settings) -> dict[str, str]:
    """nats-py connect() keyword arguments for the configured credentials."""
    if settings.nats_creds is not None:
        return {"user_credentials": str(settings.nats_creds)}
    if settings.nats_user:
        password = settings.nats_password.get_secret_value() if settings.nats_password else ""
        return {"user": settings.nats_user, "password": password}
    return {}


class ConfigError(RuntimeError):
    """Configuration that cannot work. The message is one line for the operator."""


S = TypeVar("S", bound=Settings)


def load(cls: type[S]) -> S:
    """Read settings, turning validation errors into one readable line."""
    try:
        return cls()
    except ValidationError as exc:
        problems = "; ".join(
            f"AGENTBUS_{'_'.join(str(p) for p in err['loc']).upper()}: {err['msg']}"
            for err in exc.errors()
        )
        raise ConfigError(f"invalid configuration: {problems}") from None
