"""The embedded graph server listens on loopback only (issue 13, point 10).

FalkorDB binds Bolt on [::] with no option to choose; the engine preloads a shim that turns a
wildcard bind into loopback. These tests look at the real sockets of the session's graph server
and dial it from the machine's own network addresses.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from agentbus.runtime.engines.errors import EngineError
from agentbus.runtime.engines.falkordb import GraphEngine, ipaddress_is_loopback
from agentbus.runtime.engines.loopback import loopback_shim, preload_env


def _listeners(pid: int) -> list[tuple[str, int]]:
    conns = psutil.Process(pid).net_connections(kind="tcp")
    return [(c.laddr.ip, c.laddr.port) for c in conns if c.status == psutil.CONN_LISTEN]


def _non_loopback_addresses() -> list[tuple[int, str]]:
    found = []
    for addrs in psutil.net_if_addrs().values():
        for addr in addrs:
            if addr.family in (socket.AF_INET, socket.AF_INET6):
                ip = addr.address.split("%")[0]
                if not ipaddress_is_loopback(ip) and not ip.startswith("fe80"):
                    found.append((addr.family, ip))
    return found


def test_bolt_and_redis_ports_listen_on_loopback_only(graph_engine: GraphEngine) -> None:
    [pid] = graph_engine.pids()
    listeners = _listeners(pid)
    ports = {port for _, port in listeners}
    assert {graph_engine.port, graph_engine.bolt_port} <= ports
    assert all(ipaddress_is_loopback(ip) for ip, _ in listeners), listeners
    # Still reachable where clients dial it.
    with socket.create_connection(("127.0.0.1", graph_engine.bolt_port), timeout=2):
        pass


def test_bolt_refuses_the_machines_network_addresses(graph_engine: GraphEngine) -> None:
    addresses = _non_loopback_addresses()
    if not addresses:
        pytest.skip("this machine has no network address besides loopback")
    for family, ip in addresses:
        for port in (graph_engine.bolt_port, graph_engine.port):
            with socket.socket(family, socket.SOCK_STREAM) as sock:
                sock.settimeout(2)
                with pytest.raises(OSError):
                    sock.connect((ip, port))


_BIND_WILDCARDS = """
import socket
for family, host in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::"), (socket.AF_INET, "")):
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        print(sock.getsockname()[0])
with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
    sock.bind(("127.0.0.2", 0))
    print(sock.getsockname()[0])
"""


def test_shim_turns_wildcard_binds_into_loopback(tmp_path: Path) -> None:
    shim = loopback_shim(tmp_path, "graph")
    env = preload_env(dict(os.environ), shim)
    out = subprocess.run(
        [sys.executable, "-c", _BIND_WILDCARDS], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["127.0.0.1", "::ffff:127.0.0.1", "127.0.0.1", "127.0.0.2"]


def test_no_compiler_refuses_to_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTBUS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.delenv("CC", raising=False)
    with pytest.raises(EngineError, match="C compiler is needed"):
        loopback_shim(tmp_path / "data", "graph")


@pytest.mark.parametrize(
    ("ip", "loopback"),
    [
        ("127.0.0.1", True),
        ("::1", True),
        ("::ffff:127.0.0.1", True),
        ("0.0.0.0", False),
        ("::", False),
        ("10.1.2.3", False),
        ("::ffff:10.1.2.3", False),
    ],
)
def test_loopback_addresses(ip: str, loopback: bool) -> None:
    assert ipaddress_is_loopback(ip) is loopback
