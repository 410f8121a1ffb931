"""What every embedded engine looks like, and the child-process handling they share."""

from __future__ import annotations

import abc
import contextlib
import fcntl
import os
import signal
import subprocess
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import ClassVar, Self

from .errors import EngineError
from .ports import ensure_writable_dir, free_port, port_in_use

# Words that mark the log line explaining a failure. Servers often log a consequence after the
# cause ("database system is shut down" after "FATAL: could not create any TCP/IP sockets").
_FAILURE_MARKERS = ("FATAL", "PANIC", "ERROR", "error:", "[FTL]", "[ERR]")
_MAX_QUOTE = 300


class Engine(abc.ABC):
    """One engine the platform needs, started for one data directory."""

    name: ClassVar[str]
    # The variable that points a service at this engine; env() maps it to url.
    env_var: ClassVar[str]

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir.expanduser().absolute()

    @property
    @abc.abstractmethod
    def url(self) -> str:
        """Where clients reach the engine (raises EngineError if not known before start)."""

    @abc.abstractmethod
    def start(self, timeout: float = 30.0) -> None:
        """Start and block until ready. Idempotent; raises EngineError and leaves nothing behind."""

    @abc.abstractmethod
    def stop(self, timeout: float = 15.0) -> None:
        """Stop gracefully, force after `timeout`. Idempotent."""

    @abc.abstractmethod
    def is_running(self) -> bool: ...

    @abc.abstractmethod
    def pids(self) -> list[int]:
        """Process ids this launcher started and that are still running."""

    def env(self) -> dict[str, str]:
        """Environment variables that point a service at this engine."""
        return {self.env_var: self.url}

    def _cancel_start(self) -> None:  # noqa: B027 - optional hook, a no-op by default
        """Ask a start() running in another thread to give up soon (used by EngineSet)."""

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.is_running() else "stopped"
        return f"<{type(self).__name__} {self.data_dir} {state}>"


class ProcessEngine(Engine):
    """An engine that is one server process we launch, watch and stop.

    Subclasses say which ports to pick, what to run and how to tell it is ready; this class does
    the rest: logging to ``<data_dir>/<name>.log``, start-up deadline, clean-up on failure,
    graceful stop with a SIGKILL fallback.
    """

    stop_signal: ClassVar[signal.Signals] = signal.SIGTERM
    poll_interval: ClassVar[float] = 0.05

    def __init__(self, data_dir: Path) -> None:
        super().__init__(data_dir)
        self._proc: subprocess.Popen[bytes] | None = None
        # start/stop may be called from different threads (EngineSet, signal handlers).
        self._lock = threading.Lock()
        self._cancel = threading.Event()
        self._log_offset = 0
        self._command_line: list[str] = []
        self._dir_lock: int | None = None
        # System user the server runs as; set by engines that refuse to run as root.
        self._run_as: str | None = None
        # Ports picked at the last start, by label; a restart() reuses them, since services
        # were handed URLs with these ports and reconnect to the same address.
        self._picked_ports: dict[str, int] = {}
        self._keep_ports = False
        self.restarts = 0

    @property
    def log_path(self) -> Path:
        return self.data_dir / f"{self.name}.log"

    # -- hooks for subclasses ------------------------------------------------------------------

    @abc.abstractmethod
    def _choose_ports(self) -> None:
        """Resolve port 0 to a free port; raise EngineError if a requested port is taken."""

    def _prepare(self, deadline: float) -> None:
        """One-off work before the server starts (e.g. initdb)."""

    @abc.abstractmethod
    def _command(self) -> list[str]: ...

    @abc.abstractmethod
    def _ready(self) -> bool:
        """One readiness probe; False means "not yet", EngineError means "never"."""

    def _after_ready(self, deadline: float) -> None:
        """Work that needs the running server (e.g. create the database)."""

    def _after_stop(self) -> None:
        """Tidy up once the server is gone (e.g. remove a socket dir)."""

    def _child_env(self) -> dict[str, str]:
        return dict(os.environ)

    # -- lifecycle -----------------------------------------------------------------------------

    def is_running(self) -> bool:
        proc = self._proc
        return proc is not None and proc.poll() is None

    def pids(self) -> list[int]:
        proc = self._proc
        return [proc.pid] if proc is not None and proc.poll() is None else []

    def start(self, timeout: float = 30.0) -> None:
        with self._lock:
            if self.is_running():
                return
            self._forget_dead_child()
            self._cancel.clear()
            deadline = time.monotonic() + timeout
            ensure_writable_dir(self.data_dir, self.name)
            self._lock_data_dir()
            try:
                self._choose_ports()
                self._begin_log()
                self._prepare(deadline)
                self._proc = self._spawn(self._command())
                self._note_lock_holder(self._proc.pid)
                self._wait_until_ready(deadline, timeout)
                self._after_ready(deadline)
            except BaseException:
                # Whatever went wrong (including Ctrl-C), never leave a half-started server.
                self._kill()
                raise

    def stop(self, timeout: float = 15.0) -> None:
        # Set before taking the lock so a start() in progress in another thread gives up.
        self._cancel.set()
        with self._lock:
            proc = self._proc
            if proc is None:
                return
            try:
                if proc.poll() is None:
                    with contextlib.suppress(ProcessLookupError):
                        proc.send_signal(self.stop_signal)
                    try:
                        proc.wait(timeout)
                    except subprocess.TimeoutExpired:
                        self._kill_group(proc)
            finally:
                self._proc = None
                self._tidy_up()

    def _cancel_start(self) -> None:
        self._cancel.set()

    def restart(self, timeout: float = 30.0) -> None:
        """Start again after the server died, on the same ports and data.

        What the supervisor calls: a crashed server can leave children behind (postgres
        backends outlive their postmaster for a moment, holding its shared memory and port),
        so the rest of its process group goes first.
        """
        with self._lock:
            proc = self._proc
            if proc is not None and proc.poll() is not None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)
        self._keep_ports = True
        try:
            self.start(timeout)
        finally:
            self._keep_ports = False
        self.restarts += 1

    def exit_description(self) -> str:
        """How the server ended ("signal SIGKILL", "code 1"), or "running"."""
        proc = self._proc
        code = None if proc is None else proc.poll()
        return "running" if code is None else describe_exit(code)

    # -- helpers for subclasses ----------------------------------------------------------------

    def _pick_port(self, requested: int, host: str, label: str = "port") -> int:
        if self._keep_ports and label in self._picked_ports:
            # A restart: the same port, even if the dead server's socket lingers a moment
            # (servers bind with SO_REUSEADDR; a real conflict fails the start and is retried).
            return self._picked_ports[label]
        if requested == 0:
            port = free_port(host)
        elif port_in_use(requested, host):
            raise EngineError(f"{self.name}: {label} {requested} on {host} is already in use")
        else:
            port = requested
        self._picked_ports[label] = port
        return port

    def _run_tool(
        self, argv: Sequence[str], deadline: float, what: str, stdin_text: str | None = None
    ) -> None:
        """Run a short-lived helper (initdb, psql) with its output appended to the log."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise EngineError(f"{self.name}: timed out before {what}; see {self.log_path}")
        with self.log_path.open("ab") as log:
            try:
                result = subprocess.run(
                    list(argv),
                    input=stdin_text.encode() if stdin_text is not None else None,
                    stdin=None if stdin_text is not None else subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=self.data_dir,
                    env=self._child_env(),
                    user=self._run_as,
                    start_new_session=True,
                    timeout=remaining,
                    check=False,
                )
            except subprocess.TimeoutExpired:
                raise EngineError(
                    f"{self.name}: {what} did not finish in time; see {self.log_path}"
                ) from None
            except OSError as exc:
                raise EngineError(f"{self.name}: cannot run {argv[0]} ({exc.strerror})") from None
        if result.returncode != 0:
            raise EngineError(
                f"{self.name}: {what} failed (code {result.returncode}): {self.last_log_line()}"
            )

    def log_since_start(self) -> str | None:
        """What this start wrote to the log (None when there is no log)."""
        try:
            with self.log_path.open("rb") as log:
                log.seek(self._log_offset)
                return log.read().decode("utf-8", errors="replace")
        except OSError:
            return None

    def last_log_line(self) -> str:
        """The most telling line this start wrote to the log: the last failure line, if any,
        else the last non-empty line."""
        text = self.log_since_start()
        if text is None:
            return f"(no log at {self.log_path})"
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        if not lines:
            return f"(no output; see {self.log_path})"
        failures = [line for line in lines if any(m in line for m in _FAILURE_MARKERS)]
        line = (failures or lines)[-1]
        return line if len(line) <= _MAX_QUOTE else line[: _MAX_QUOTE - 3] + "..."

    # -- internals -----------------------------------------------------------------------------

    def _begin_log(self) -> None:
        # Append so earlier runs stay readable; remember where this run starts so a failure
        # quotes this run's output, not the last words of a previous one.
        with self.log_path.open("ab") as log:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S")
            log.write(f"==== agentbus: starting {self.name} at {stamp} ====\n".encode())
            self._log_offset = log.tell()

    def _spawn(self, argv: Sequence[str]) -> subprocess.Popen[bytes]:
        self._command_line = list(argv)
        with self.log_path.open("ab") as log:
            try:
                return subprocess.Popen(
                    list(argv),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=self.data_dir,
                    env=self._child_env(),
                    user=self._run_as,
                    # The server holds the data-dir lock too, so an orphaned server (launcher
                    # killed) still keeps a second one off its data.
                    pass_fds=() if self._dir_lock is None else (self._dir_lock,),
                    # Own session and process group: a Ctrl-C in the terminal reaches only the
                    # launcher, which then stops the engines in order.
                    start_new_session=True,
                )
            except OSError as exc:
                raise EngineError(f"{self.name}: cannot run {argv[0]} ({exc.strerror})") from None

    def _wait_until_ready(self, deadline: float, timeout: float) -> None:
        proc = self._proc
        assert proc is not None
        program = Path(self._command_line[0]).name
        while True:
            code = proc.poll()
            if code is not None:
                how = describe_exit(code)
                why = self.last_log_line()
                raise EngineError(f"{self.name}: {program} exited during start-up ({how}): {why}")
            if self._cancel.is_set():
                raise EngineError(f"{self.name}: start-up cancelled")
            if self._ready():
                return
            if time.monotonic() >= deadline:
                why = self.last_log_line()
                raise EngineError(f"{self.name}: not ready after {timeout:g}s; last log: {why}")
            time.sleep(self.poll_interval)

    def _lock_data_dir(self) -> None:
        """Take the data dir for this engine, or fail if another server is using it.

        Two servers on one data dir would corrupt it (nats-server and redis-server do not check;
        postgres does). flock is released by the kernel when every holder has exited, so a
        crash leaves no stale lock behind.
        """
        path = self.data_dir / f".{self.name}.lock"
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise EngineError(f"{self.name}: cannot create {path} ({exc.strerror})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise EngineError(
                f"{self.name}: data dir {self.data_dir} is in use by a running server "
                f"(pid {holder}); stop it first"
            ) from None
        self._dir_lock = fd

    def _note_lock_holder(self, pid: int) -> None:
        # For the message a second launcher gets; the lock itself is the flock.
        if self._dir_lock is not None:
            os.ftruncate(self._dir_lock, 0)
            os.pwrite(self._dir_lock, f"{pid}\n".encode(), 0)

    def _tidy_up(self) -> None:
        self._after_stop()
        if self._dir_lock is not None:
            os.close(self._dir_lock)
            self._dir_lock = None

    def _kill(self) -> None:
        proc = self._proc
        self._proc = None
        if proc is not None and proc.poll() is None:
            self._kill_group(proc)
        self._tidy_up()

    @staticmethod
    def _kill_group(proc: subprocess.Popen[bytes]) -> None:
        # The whole group: a server's own children (postgres backends) go too. Only while the
        # leader is unreaped, so the group id cannot belong to someone else by now.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()

    def _forget_dead_child(self) -> None:
        # A server that died on its own since the last start: reap it and tidy its leftovers.
        if self._proc is not None and self._proc.poll() is not None:
            self._proc = None
            self._tidy_up()


def describe_exit(code: int) -> str:
    """A child's exit status as people say it: "code 1", "signal SIGKILL"."""
    if code >= 0:
        return f"code {code}"
    try:
        return f"signal {signal.Signals(-code).name}"
    except ValueError:
        return f"signal {-code}"
