"""Fixtures shared by every test: real embedded engines and the real platform, on free ports.

Engines start once per test session (they are real processes) and stop at the end; nothing is
left running. Tests never mock NATS, Postgres, the graph server or ClickHouse.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from agentbus.runtime.engines import GraphEngine, NatsEngine, PostgresEngine, free_port
from agentbus.runtime.platform import Platform

# Never let a developer's shell configuration leak into the tests.
for _name in [n for n in os.environ if n.startswith("AGENTBUS_")]:
    del os.environ[_name]
os.environ.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)


@pytest.fixture(scope="session")
def engines_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("engines")


@pytest.fixture(scope="session")
def nats_engine(engines_root: Path) -> Iterator[NatsEngine]:
    with NatsEngine(engines_root / "nats") as engine:
        yield engine


@pytest.fixture(scope="session")
def postgres_engine(engines_root: Path) -> Iterator[PostgresEngine]:
    with PostgresEngine(engines_root / "postgres") as engine:
        yield engine


@pytest.fixture(scope="session")
def graph_engine(engines_root: Path) -> Iterator[GraphEngine]:
    with GraphEngine(engines_root / "graph") as engine:
        yield engine


@pytest.fixture(scope="session")
def nats_url(nats_engine: NatsEngine) -> str:
    return nats_engine.url


@pytest.fixture
def service_env(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    nats_engine: NatsEngine,
    postgres_engine: PostgresEngine,
    graph_engine: GraphEngine,
) -> dict[str, str]:
    """Environment pointing a service built in-process at the session's engines."""
    env = {
        **nats_engine.env(),
        **postgres_engine.env(),
        **graph_engine.env(),
        "AGENTBUS_DATA_DIR": str(tmp_path / "var"),
        "AGENTBUS_GATEWAY_PORT": str(free_port()),
        # The diagnostic `steps` assistant (off in production) drives the durability tests.
        "AGENTBUS_DIAGNOSTIC_ASSISTANTS": "true",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


@pytest.fixture(scope="session")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    """The whole platform, as `agentbus up` runs it: engines plus five service processes."""
    root = tmp_path_factory.mktemp("platform")
    # Small embedding batches make a document's indexing long enough to interrupt in the tests,
    # and a small size limit makes "file too large" cheap to show.
    pipeline = root / "pipeline.yaml"
    pipeline.write_text("embedding:\n  batch_size: 4\nmax_file_bytes: 2000000\n")
    plat = Platform(
        root / "var",
        gateway_port=free_port(),
        extra_env={
            "AGENTBUS_PIPELINE_CONFIG": str(pipeline),
            # Low enough to show a 429 in a test, high enough for the other tests.
            "AGENTBUS_RATE_LIMITS": '{"register": "4/minute"}',
        },
    )
    plat.start(timeout=120)
    try:
        yield plat
    finally:
        plat.stop()
