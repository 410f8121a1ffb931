"""What the embedded platform hands its services, besides the engines' addresses."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from agentbus.runtime.platform import documents_max_bytes


def test_documents_bucket_limit_fits_the_free_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    free = shutil.disk_usage(tmp_path).free
    # A data dir not made yet is measured on the disk it will be on.
    assert documents_max_bytes(tmp_path / "var" / "x") == min(10 * 1024**3, int(free * 0.4))

    # A laptop with 5 GiB free: 40% of it, so the embedded NATS can reserve it.
    usage = shutil.disk_usage(tmp_path)._replace(free=5 * 1024**3)
    monkeypatch.setattr(shutil, "disk_usage", lambda _path: usage)
    assert documents_max_bytes(tmp_path) == 2 * 1024**3
    # Plenty of disk: the 10 GiB default.
    usage = usage._replace(free=100 * 1024**3)
    assert documents_max_bytes(tmp_path) == 10 * 1024**3
