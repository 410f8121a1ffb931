"""Fixtures shared by every test: real embedded engines and the real platform, on free ports.

Engines start once per test session (they are real processes) and stop at the end; nothing is
left running. Tests never mock NATS, Postgres, the graph server or ClickHouse.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from agentbus.runtime.engines import (
    GraphEngine,
    NatsEngine,
    PostgresEngine,
    ProcessEngine,
    free_port,
)
from agentbus.runtime.platform import Platform
from agentbus.runtime.supervision import Supervisor
from agentbus.runtime.testing import RAISED_RATE_LIMITS

# Never let a developer's shell configuration leak into the tests.
for _name in [n for n in os.environ if n.startswith("AGENTBUS_")]:
    del os.environ[_name]
os.environ.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)


# Engines the session started (its own and the platform's), so that a test can be told, before
# it starts waiting on one, that an engine is dead for good.
_SESSION_ENGINES: list[ProcessEngine] = []
_SUPERVISORS: list[Supervisor] = []


def _log_tail(engine: ProcessEngine, lines: int = 15) -> str:
    try:
        text = engine.log_path.read_text(errors="replace")
    except OSError:
        return f"(no log at {engine.log_path})"
    return "\n".join(text.splitlines()[-lines:])


@pytest.fixture(scope="session")
def engine_supervisor() -> Iterator[Supervisor]:
    """Restarts a session engine that dies, as `agentbus up` does, so one crash costs the tests
    that were using it, not the rest of the session."""
    supervisor = Supervisor(lambda line: print(f"\n{line}", file=sys.stderr, flush=True))
    _SUPERVISORS.append(supervisor)
    supervisor.start()
    yield supervisor
    supervisor.stop()


def _supervised(engine: ProcessEngine, supervisor: Supervisor) -> ProcessEngine:
    _SESSION_ENGINES.append(engine)
    supervisor.watch(
        f"{engine.name} ({engine.data_dir})",
        engine.is_running,
        lambda: engine.restart(timeout=60),
        lambda: f"{engine.exit_description()}: {engine.last_log_line()}",
    )
    return engine


@pytest.fixture(scope="session")
def session_root() -> Iterator[Path]:
    """Where the session's engines keep their data: not under pytest's own temp root.

    PostgreSQL runs as an unprivileged user when we are root, so every parent of its data dir
    must be traversable; pytest resets `/tmp/pytest-of-<user>` to mode 0700 whenever another
    pytest session starts, which cut a running server off its own data (Permission denied).
    """
    root = Path(tempfile.mkdtemp(prefix="agentbus-tests-"))
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def engines_root(session_root: Path) -> Path:
    path = session_root / "engines"
    path.mkdir()
    return path


@pytest.fixture(scope="session")
def nats_engine(engines_root: Path, engine_supervisor: Supervisor) -> Iterator[NatsEngine]:
    with NatsEngine(engines_root / "nats") as engine:
        _supervised(engine, engine_supervisor)
        yield engine
        engine_supervisor.stop()


@pytest.fixture(scope="session")
def postgres_engine(engines_root: Path, engine_supervisor: Supervisor) -> Iterator[PostgresEngine]:
    with PostgresEngine(engines_root / "postgres") as engine:
        _supervised(engine, engine_supervisor)
        yield engine
        engine_supervisor.stop()


@pytest.fixture(scope="session")
def graph_engine(engines_root: Path, engine_supervisor: Supervisor) -> Iterator[GraphEngine]:
    with GraphEngine(engines_root / "graph") as engine:
        _supervised(engine, engine_supervisor)
        yield engine
        engine_supervisor.stop()


@pytest.fixture(autouse=True)
def _engines_alive(request: pytest.FixtureRequest) -> Iterator[None]:
    """A test does not start waiting on an engine that is dead for good: it fails at once with
    the engine's last log lines (instead of a 300 s timeout, test after test). An engine that
    died during a test and came back leaves its log lines in that test's report."""
    failed = {name for sup in _SUPERVISORS for name in sup.failed()}
    for engine in _SESSION_ENGINES:
        if not engine.is_running() and any(engine.name in name for name in failed):
            pytest.fail(
                f"the {engine.name} engine is down and was not restarted; its log "
                f"({engine.log_path}) ends:\n{_log_tail(engine)}",
                pytrace=False,
            )
    restarts = {id(engine): engine.restarts for engine in _SESSION_ENGINES}
    yield
    for engine in _SESSION_ENGINES:
        if engine.restarts != restarts.get(id(engine), 0):
            request.node.add_report_section(
                "call", f"{engine.name} engine died and was restarted", _log_tail(engine)
            )


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
        # The tests read /readyz's detail without the operator token.
        "AGENTBUS_READINESS_DETAIL": "public",
        # As under `agentbus up`: tenant `dev` and <data_dir>/dev-api-key.
        "AGENTBUS_DEV_TENANT": "true",
        # The production defaults (chat 30/minute, register 10/hour) are below a session's use.
        "AGENTBUS_RATE_LIMITS": json.dumps(RAISED_RATE_LIMITS),
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


@pytest.fixture(scope="session")
def platform(session_root: Path) -> Iterator[Platform]:
    """The whole platform, as `agentbus up` runs it: engines plus five service processes."""
    root = session_root / "platform"
    root.mkdir()
    # Small embedding batches make a document's indexing long enough to interrupt in the tests,
    # and a small size limit makes "file too large" cheap to show.
    pipeline = root / "pipeline.yaml"
    pipeline.write_text("embedding:\n  batch_size: 4\nmax_file_bytes: 2000000\n")
    # A user's langgraph.json project in a temporary directory, served beside the built-ins.
    user_graphs = root / "user-graphs"
    shutil.copytree(Path(__file__).parent / "services/orchestrator/tests/user_graph", user_graphs)
    plat = Platform(
        root / "var",
        gateway_port=free_port(),
        extra_env={
            "AGENTBUS_PIPELINE_CONFIG": str(pipeline),
            "AGENTBUS_LANGGRAPH_CONFIG": str(user_graphs / "langgraph.json"),
            # Semantic search in the LangGraph store over the items' `text`.
            "AGENTBUS_STORE_INDEX_FIELDS": '["text"]',
            # LangGraph run webhooks may reach the tests' receivers on the loopback, any port.
            "AGENTBUS_WEBHOOK_ALLOWED_URLS": '["http://127.0.0.1"]',
            # The session's one tenant makes more calls than the production defaults allow;
            # register stays low enough to show a 429 in a test, high enough for the others.
            "AGENTBUS_RATE_LIMITS": json.dumps({**RAISED_RATE_LIMITS, "register": "4/minute"}),
        },
    )
    plat.start(timeout=120)
    if plat.supervisor is not None:
        _SUPERVISORS.append(plat.supervisor)
    _SESSION_ENGINES.extend(e for e in plat.engines.engines if isinstance(e, ProcessEngine))
    try:
        yield plat
    finally:
        plat.stop()
