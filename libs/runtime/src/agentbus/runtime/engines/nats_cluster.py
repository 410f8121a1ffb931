"""A JetStream cluster of nats-server processes on loopback: the Helm chart's production topology
(three servers, R3 streams) on one machine, for fault tests and `agentbus up --nats-nodes 3`.

Clients get every server's URL (comma-separated) and fail over between them; streams and buckets
are created with three replicas (AGENTBUS_NATS_REPLICAS), so a server that dies loses nothing and
its streams elect a new leader among the other two.
"""

from __future__ import annotations

import concurrent.futures
import json
import time
import urllib.error
import urllib.request
from pathlib import Path

from .base import Engine
from .errors import EngineError
from .nats import ClusterSeat, NatsEngine
from .ports import free_port


class NatsCluster(Engine):
    name = "nats"
    env_var = "AGENTBUS_NATS_URL"

    def __init__(self, data_dir: Path, nodes: int = 3) -> None:
        super().__init__(data_dir)
        if nodes < 3:
            raise EngineError("nats: a JetStream cluster needs at least 3 servers")
        routes = [free_port() for _ in range(nodes)]
        self.nodes = [
            NatsEngine(
                self.data_dir / f"n{i + 1}",
                port=free_port(),
                monitor_port=free_port(),
                seat=ClusterSeat(
                    server_name=f"agentbus-n{i + 1}",
                    cluster_port=routes[i],
                    peer_ports=tuple(p for j, p in enumerate(routes) if j != i),
                ),
            )
            for i in range(nodes)
        ]
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    @property
    def url(self) -> str:
        return ",".join(node.url for node in self.nodes)

    def start(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        # Together: each server waits for its peers' routes before JetStream is usable.
        with concurrent.futures.ThreadPoolExecutor(len(self.nodes)) as pool:
            futures = [pool.submit(node.start, timeout) for node in self.nodes]
            errors = [f.exception() for f in futures]
        if any(errors):
            self.stop()
            raise next(e for e in errors if e is not None)
        while time.monotonic() < deadline:
            if self.meta_leader() is not None:
                return
            time.sleep(0.2)
        self.stop()
        raise EngineError(f"nats: the cluster elected no JetStream leader within {timeout:g}s")

    def stop(self, timeout: float = 15.0) -> None:
        for node in self.nodes:
            node.stop(timeout)

    def is_running(self) -> bool:
        return all(node.is_running() for node in self.nodes)

    def pids(self) -> list[int]:
        return [pid for node in self.nodes for pid in node.pids()]

    def _cancel_start(self) -> None:
        for node in self.nodes:
            node._cancel_start()

    def _jsz(self, node: NatsEngine, query: str = "") -> dict[str, object] | None:
        try:
            with self._opener.open(f"{node.monitor_url}/jsz{query}", timeout=1.0) as response:
                data = json.loads(response.read())
                return data if isinstance(data, dict) else None
        except (urllib.error.URLError, OSError, ValueError):
            return None

    def meta_leader(self) -> str | None:
        """The server name of the JetStream meta leader, once the cluster has one."""
        for node in self.nodes:
            if not node.is_running():
                continue
            data = self._jsz(node)
            meta = data.get("meta_cluster") if data else None
            leader = meta.get("leader") if isinstance(meta, dict) else None
            if isinstance(leader, str) and leader:
                return leader
        return None

    def node_named(self, server_name: str) -> NatsEngine:
        for node in self.nodes:
            if node.seat is not None and node.seat.server_name == server_name:
                return node
        raise KeyError(server_name)
