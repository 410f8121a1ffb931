"""The ClickHouse connection: a server over HTTP, or embedded chDB, behind one client API."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from typing import Any

import clickhouse_connect
from clickhouse_connect.driver.client import Client


class ClickHouseStore:
    """Owns the client. chDB runs in this process and allows one owner per data directory."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self._client: Client | None = None
        # clickhouse-connect clients are not safe for concurrent queries from several threads.
        self._lock = threading.Lock()

    @property
    def embedded(self) -> bool:
        return self.dsn.startswith("chdb://")

    def open(self) -> None:
        if self.embedded:
            from pathlib import Path

            Path(self.dsn.removeprefix("chdb://")).mkdir(parents=True, exist_ok=True)
        self._client = clickhouse_connect.get_client(dsn=self.dsn)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    @property
    def client(self) -> Client:
        if self._client is None:
            raise RuntimeError("ClickHouse client is not open")
        return self._client

    def query_sync(
        self, sql: str, parameters: dict[str, Any] | None = None
    ) -> list[tuple[Any, ...]]:
        return self.query_columns_sync(sql, parameters)[1]

    def query_columns_sync(
        self, sql: str, parameters: dict[str, Any] | None = None
    ) -> tuple[list[str], list[tuple[Any, ...]]]:
        """Column names and rows. Values travel as server-side parameters, never in the text."""
        with self._lock:
            result = self.client.query(sql, parameters=parameters)
            return list(result.column_names), [tuple(row) for row in result.result_rows]

    def command(self, sql: str) -> None:
        with self._lock:
            self.client.command(sql)

    def execute_sync(self, sql: str, parameters: dict[str, Any]) -> None:
        """A statement with server-side parameters (a DELETE), waiting until it is applied."""
        with self._lock:
            self.client.command(sql, parameters=parameters, settings={"mutations_sync": 2})

    async def execute(self, sql: str, parameters: dict[str, Any]) -> None:
        await asyncio.to_thread(self.execute_sync, sql, parameters)

    def insert(self, table: str, rows: Sequence[Sequence[Any]], columns: Sequence[str]) -> None:
        with self._lock:
            # Tables are partitioned by month of the event time; a backfill spanning years in one
            # batch would otherwise fail (limit 100) and come back forever.
            self.client.insert(
                table,
                rows,
                column_names=list(columns),
                settings={"max_partitions_per_insert_block": 0},
            )

    async def query(
        self, sql: str, parameters: dict[str, Any] | None = None
    ) -> list[tuple[Any, ...]]:
        return await asyncio.to_thread(self.query_sync, sql, parameters)

    async def version(self) -> str:
        rows = await self.query("SELECT version()")
        kind = "chDB (embedded)" if self.embedded else "server"
        return f"ClickHouse {rows[0][0]} {kind}"
