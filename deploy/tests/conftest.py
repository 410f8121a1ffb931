"""Fixtures of the deploy tests: the deploy tools.

Tools (helm, kubectl, kubernetes-validate, PyYAML) come from `deploy/tools/install.sh`, which
`make test` runs first; a missing tool fails the test with that hint instead of skipping it.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest


def _tool(name: str) -> str:
    # The pinned copy in the virtualenv first (deploy/tools/install.sh puts it there), then PATH.
    pinned = Path(sys.executable).parent / name
    if pinned.exists():
        return str(pinned)
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: run deploy/tools/install.sh (make test does)")
    return found


@pytest.fixture(scope="session")
def helm() -> str:
    return _tool("helm")


@pytest.fixture(scope="session")
def kubectl() -> str:
    return _tool("kubectl")


@pytest.fixture(scope="session")
def nats_server() -> str:
    return _tool("nats-server")
