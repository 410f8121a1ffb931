"""ClickHouse as embedded chDB: a directory, not a process.

chDB runs inside the process that opens it and locks its directory, so a second process cannot
open the same path ("Cannot lock file"). There is therefore nothing to launch: the one service
that owns the analytics store opens it, and checks its health. This engine only makes sure the
directory is usable and hands out the DSN.
"""

from __future__ import annotations

from pathlib import Path

from .base import Engine
from .ports import ensure_writable_dir


class ClickHouseEngine(Engine):
    name = "clickhouse"
    env_var = "AGENTBUS_CLICKHOUSE_DSN"

    def __init__(self, data_dir: Path) -> None:
        super().__init__(data_dir)
        self._started = False

    @property
    def url(self) -> str:
        # data_dir is absolute, so this reads chdb:///abs/path.
        return f"chdb://{self.data_dir}"

    def start(self, timeout: float = 30.0) -> None:
        ensure_writable_dir(self.data_dir, self.name)
        self._started = True

    def stop(self, timeout: float = 15.0) -> None:
        self._started = False

    def is_running(self) -> bool:
        # "Started" here only means the directory was checked; the store lives in its owner.
        return self._started

    def pids(self) -> list[int]:
        return []
