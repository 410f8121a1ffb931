"""Embedded engines: NATS, PostgreSQL + pgvector, FalkorDB (Bolt) and chDB, run from pip packages.

`agentbus up` and the tests start these as child processes on loopback, with their data under
one root directory, so the platform runs on one machine without Docker.
"""

from .base import Engine, ProcessEngine, describe_exit
from .clickhouse import ClickHouseEngine
from .errors import EngineError
from .falkordb import GraphEngine, unjam_bolt
from .nats import ClusterSeat, NatsEngine
from .nats_cluster import NatsCluster
from .ports import ensure_writable_dir, free_port, port_in_use
from .postgres import PostgresEngine
from .set import EngineSet

__all__ = [
    "ClickHouseEngine",
    "ClusterSeat",
    "Engine",
    "EngineError",
    "EngineSet",
    "GraphEngine",
    "NatsCluster",
    "NatsEngine",
    "PostgresEngine",
    "ProcessEngine",
    "describe_exit",
    "ensure_writable_dir",
    "free_port",
    "port_in_use",
    "unjam_bolt",
]
