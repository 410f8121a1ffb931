"""All four engines of one platform, under one data root."""

from __future__ import annotations

import concurrent.futures
from pathlib import Path
from types import TracebackType
from typing import Self

from .base import Engine, ProcessEngine
from .clickhouse import ClickHouseEngine
from .errors import EngineError
from .falkordb import GraphEngine
from .nats import NatsEngine
from .nats_cluster import NatsCluster
from .postgres import PostgresEngine


class EngineSet:
    """NATS, Postgres, the graph store and ClickHouse for `root`, each in `root/<name>`."""

    def __init__(self, root: Path, nats_nodes: int = 1) -> None:
        self.root = root.expanduser().absolute()
        # One server, or a JetStream cluster of `nats_nodes` (the production topology).
        self.nats: NatsEngine | NatsCluster = (
            NatsEngine(self.root / "nats")
            if nats_nodes == 1
            else NatsCluster(self.root / "nats", nats_nodes)
        )
        self.postgres = PostgresEngine(self.root / "postgres")
        self.graph = GraphEngine(self.root / "graph")
        self.clickhouse = ClickHouseEngine(self.root / "clickhouse")

    @property
    def engines(self) -> tuple[Engine, ...]:
        return (self.nats, self.postgres, self.graph, self.clickhouse)

    def start_all(self, timeout: float = 60.0) -> None:
        """Start every engine, concurrently; on any failure stop them all and re-raise.

        Each start is mostly waiting on a child process, so threads overlap them well
        (initdb alone takes a few seconds).
        """
        engines = self.engines
        first_error: BaseException | None = None
        with concurrent.futures.ThreadPoolExecutor(
            max_workers=len(engines), thread_name_prefix="engine-start"
        ) as pool:
            futures = [pool.submit(engine.start, timeout) for engine in engines]
            try:
                for future in concurrent.futures.as_completed(futures):
                    error = future.exception()
                    if error is not None and first_error is None:
                        # The first failure is the cause; later ones are mostly "cancelled".
                        first_error = error
                        self._cancel_all()
            except BaseException as exc:  # Ctrl-C while waiting
                first_error = exc
                self._cancel_all()
            # Leaving the with-block waits for every start to return, so none can finish
            # after the clean-up below and leave a server running.
        if first_error is not None:
            self.stop_all()
            raise first_error

    def stop_all(self, timeout: float = 15.0) -> None:
        """Stop in reverse order of start: services' dependencies go last. Idempotent."""
        errors: list[EngineError] = []
        for engine in reversed(self.engines):
            try:
                engine.stop(timeout)
            except EngineError as exc:
                # Keep going: one stubborn engine must not keep the others running.
                errors.append(exc)
        if errors:
            raise errors[0]

    def _cancel_all(self) -> None:
        for engine in self.engines:
            engine._cancel_start()

    def processes(self) -> list[ProcessEngine]:
        """Every server process, one per node of a cluster: what a supervisor watches."""
        found: list[ProcessEngine] = []
        for engine in self.engines:
            if isinstance(engine, NatsCluster):
                found.extend(engine.nodes)
            elif isinstance(engine, ProcessEngine):
                found.append(engine)
        return found

    def is_running(self) -> bool:
        return all(engine.is_running() for engine in self.engines)

    def env(self) -> dict[str, str]:
        merged: dict[str, str] = {}
        for engine in self.engines:
            merged.update(engine.env())
        return merged

    def urls(self) -> dict[str, str]:
        return {engine.name: engine.url for engine in self.engines}

    def __enter__(self) -> Self:
        self.start_all()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop_all()
