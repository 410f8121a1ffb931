"""The whole platform on one machine: embedded engines plus the five services as child processes.

`agentbus up` and the end-to-end test fixtures both use `Platform`, so what the tests start is
exactly what a newcomer runs. State (pids, URLs) is kept in `<data_dir>/run/platform.json` so that
`agentbus status` and `agentbus down` find a platform started in another terminal.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

import httpx
from pydantic import BaseModel

from agentbus.contracts import SERVICES

from .engines import (
    EngineError,
    EngineSet,
    ProcessEngine,
    describe_exit,
    ensure_writable_dir,
    free_port,
    port_in_use,
)
from .supervision import Supervisor


class PlatformError(RuntimeError):
    """The platform cannot start. The message is one line naming the problem."""


class PlatformState(BaseModel):
    launcher_pid: int
    data_dir: str
    gateway_url: str
    engines: dict[str, str]
    pids: dict[str, int]
    ops_ports: dict[str, int] = {}
    ready: bool = False
    # Supervision of each engine and service: running, restarting, failed (crash loop), paused.
    health: dict[str, str] = {}


def state_path(data_dir: Path) -> Path:
    return data_dir / "run" / "platform.json"


def read_state(data_dir: Path) -> PlatformState | None:
    path = state_path(data_dir)
    try:
        return PlatformState.model_validate_json(path.read_text())
    except (OSError, ValueError):
        return None


def _node_name(engine: ProcessEngine) -> str:
    # "nats/n2" for a node of a cluster, the engine's name otherwise.
    return f"{engine.name}/{engine.data_dir.name}" if engine.name == "nats" else engine.name


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of ours still "exists"; it is not alive for our purposes.
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            return False
    return True


def documents_max_bytes(data_dir: Path) -> int:
    """The documents bucket's limit for an embedded platform: the 10 GiB default, or 40% of the
    data dir's free disk when that is less. The embedded NATS reserves a bucket's max_bytes
    against its store (75% of the free disk), so the default would refuse to start the
    platform on a laptop with under ~13 GiB free."""
    default = 10 * 1024**3
    probe = next(p for p in (data_dir, *data_dir.parents) if p.exists())
    try:
        free = shutil.disk_usage(probe).free
    except OSError:
        return default
    return max(64 * 1024**2, min(default, int(free * 0.4)))


class Platform:
    def __init__(
        self,
        data_dir: Path,
        *,
        gateway_port: int = 8080,
        gateway_host: str = "127.0.0.1",
        services: Iterable[str] = SERVICES,
        extra_env: dict[str, str] | None = None,
        echo: IO[str] | None = None,
        supervise: bool = True,
        nats_nodes: int = 1,
    ) -> None:
        self.data_dir = data_dir.expanduser().absolute()
        self.gateway_host = gateway_host
        self.gateway_port = gateway_port
        self.services = tuple(services)
        self.extra_env = dict(extra_env or {})
        self.echo = echo
        self.engines = EngineSet(self.data_dir, nats_nodes=nats_nodes)
        self.nats_nodes = nats_nodes
        self.procs: dict[str, subprocess.Popen[str]] = {}
        # Each bus service gets its own ops port (/healthz, /readyz, /metrics) on this machine.
        self.ops_ports: dict[str, int] = {}
        self._pumps: dict[str, threading.Thread] = {}
        self._echo_lock = threading.Lock()
        # Restarts engines and services that die; off only for tests of the bare launcher.
        self.supervisor: Supervisor | None = (
            Supervisor(self.say, on_change=lambda _: self._rewrite_state()) if supervise else None
        )

    @property
    def gateway_url(self) -> str:
        return f"http://{self.gateway_host}:{self.gateway_port}"

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self, timeout: float = 120.0) -> None:
        """Start engines and services and wait until the gateway reports everything ready."""
        try:
            ensure_writable_dir(self.data_dir, "platform")
        except EngineError as exc:
            raise PlatformError(str(exc)) from None
        running = read_state(self.data_dir)
        if running is not None and pid_alive(running.launcher_pid):
            raise PlatformError(
                f"a platform is already running from {self.data_dir} (pid {running.launcher_pid});"
                " stop it with `agentbus down`"
            )
        if "gateway" in self.services and port_in_use(self.gateway_port, self.gateway_host):
            raise PlatformError(
                f"gateway port {self.gateway_port} on {self.gateway_host} is already in use "
                "(choose another with AGENTBUS_GATEWAY_PORT)"
            )
        deadline = time.monotonic() + timeout
        try:
            self.engines.start_all(timeout=timeout)
            for name in self.services:
                self.start_service(name)
            self.write_state(ready=False)
            self.wait_ready(max(1.0, deadline - time.monotonic()))
            self.write_state(ready=True)
            self._supervise()
        except EngineError as exc:
            self.stop()
            raise PlatformError(str(exc)) from None
        except BaseException:
            self.stop()
            raise

    def stop(self, timeout: float = 20.0) -> None:
        """Stop services (SIGTERM, then SIGKILL after `timeout`), then engines. Idempotent."""
        if self.supervisor is not None:
            self.supervisor.stop()  # first: a stop must not look like a crash to restart
        for proc in self.procs.values():
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for proc in self.procs.values():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for pump in self._pumps.values():
            pump.join(timeout=2)
        self.procs.clear()
        self._pumps.clear()
        self.engines.stop_all()
        with contextlib.suppress(FileNotFoundError):
            state_path(self.data_dir).unlink()

    def __enter__(self) -> Platform:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    # -- services ----------------------------------------------------------------------------

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(self.engines.env())
        env.update(
            {
                "AGENTBUS_DATA_DIR": str(self.data_dir),
                "AGENTBUS_GATEWAY_HOST": self.gateway_host,
                "AGENTBUS_GATEWAY_PORT": str(self.gateway_port),
                "PYTHONUNBUFFERED": "1",
                # One machine, one developer: a ready-made tenant and key for the CLI.
                "AGENTBUS_DEV_TENANT": "true",
                # On a cluster, every stream and bucket on three servers.
                "AGENTBUS_NATS_REPLICAS": str(min(self.nats_nodes, 3)),
            }
        )
        # A local platform serves the diagnostic assistants (off by default: production).
        env.setdefault("AGENTBUS_DIAGNOSTIC_ASSISTANTS", "true")
        # `agentbus status` and the launcher read /readyz's detail (production: operator token).
        env.setdefault("AGENTBUS_READINESS_DETAIL", "public")
        env.setdefault("AGENTBUS_DOCUMENTS_MAX_BYTES", str(documents_max_bytes(self.data_dir)))
        env.update(self.extra_env)
        return env

    def start_service(self, name: str) -> None:
        if name not in SERVICES:
            raise PlatformError(f"unknown service {name!r}")
        old = self.procs.get(name)
        if old is not None and old.poll() is None:
            raise PlatformError(f"{name} is already running (pid {old.pid})")
        logs = self.data_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        env = self.env()
        if name != "gateway":
            self.ops_ports[name] = self.ops_ports.get(name) or free_port()
            env["AGENTBUS_OPS_PORT"] = str(self.ops_ports[name])
        proc = subprocess.Popen(
            [sys.executable, "-m", f"agentbus.{name}"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
            # Own session: a Ctrl-C in the terminal reaches only the launcher, which then stops
            # every child in order instead of all of them dying at once.
            start_new_session=True,
        )
        self.procs[name] = proc
        if self.supervisor is not None:
            self.supervisor.resume(name)
        pump = threading.Thread(
            target=self._pump, args=(name, proc, logs / f"{name}.log"), daemon=True
        )
        pump.start()
        self._pumps[name] = pump

    def stop_service(self, name: str, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        """Signal one service and wait for it; returns its exit code. It stays stopped (the
        supervisor leaves it alone) until start_service."""
        if self.supervisor is not None:
            self.supervisor.pause(name)
        proc = self.procs[name]
        if proc.poll() is None:
            proc.send_signal(sig)
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            return proc.wait()

    def _pump(self, name: str, proc: subprocess.Popen[str], log_path: Path) -> None:
        """Copy a child's output to its log file and, prefixed with its name, to the console."""
        assert proc.stdout is not None
        width = max(len(s) for s in SERVICES)
        with log_path.open("a", encoding="utf-8") as log:
            for line in proc.stdout:
                log.write(line)
                log.flush()
                if self.echo is not None:
                    with self._echo_lock:
                        self.echo.write(f"{name:<{width}} | {line}")
                        self.echo.flush()

    def last_output(self, name: str) -> str:
        path = self.data_dir / "logs" / f"{name}.log"
        with contextlib.suppress(OSError):
            lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
            if lines:
                return lines[-1][:500]
        return ""

    # -- supervision -------------------------------------------------------------------------

    def _supervise(self) -> None:
        supervisor = self.supervisor
        if supervisor is None:
            return
        for engine in self.engines.processes():
            supervisor.watch(
                engine.name if self.nats_nodes == 1 else _node_name(engine),
                engine.is_running,
                lambda engine=engine: engine.restart(timeout=60),  # type: ignore[misc]
                lambda engine=engine: (  # type: ignore[misc]
                    f"{engine.exit_description()}: {engine.last_log_line()} - see {engine.log_path}"
                ),
            )
        for name in self.procs:
            supervisor.watch(
                name,
                lambda name=name: self.procs[name].poll() is None,  # type: ignore[misc]
                lambda name=name: self.start_service(name),  # type: ignore[misc]
                lambda name=name: self._describe_service_exit(name),  # type: ignore[misc]
            )
        supervisor.start()

    def _describe_service_exit(self, name: str) -> str:
        code = self.procs[name].poll()
        how = "running" if code is None else describe_exit(code)
        log = self.data_dir / "logs" / f"{name}.log"
        return f"{how}: {self.last_output(name)} - see {log}"

    def say(self, line: str) -> None:
        """A launcher message: to the console when echoing, and always to logs/supervisor.log."""
        logs = self.data_dir / "logs"
        with contextlib.suppress(OSError):
            logs.mkdir(parents=True, exist_ok=True)
            with (logs / "supervisor.log").open("a", encoding="utf-8") as log:
                log.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {line}\n")
        if self.echo is not None:
            with self._echo_lock:
                self.echo.write(line + "\n")
                self.echo.flush()

    def _rewrite_state(self) -> None:
        # New pids after a restart, and the supervision picture for `agentbus status`.
        with contextlib.suppress(OSError):
            self.write_state(ready=True)

    # -- readiness ---------------------------------------------------------------------------

    def readiness(self, timeout: float = 10.0) -> tuple[int, dict[str, Any]]:
        response = httpx.get(f"{self.gateway_url}/readyz", timeout=timeout)
        return response.status_code, response.json()

    def wait_ready(self, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        last: dict[str, Any] = {}
        while time.monotonic() < deadline:
            for name, proc in self.procs.items():
                code = proc.poll()
                if code is not None:
                    raise PlatformError(
                        f"{name} exited during start-up (code {code}): {self.last_output(name)}"
                    )
            with contextlib.suppress(httpx.HTTPError, ValueError):
                status, last = self.readiness()
                if status == 200:
                    return last
            time.sleep(0.25)
        waiting = ", ".join(last.get("not_ready", [])) or "the gateway"
        raise PlatformError(f"platform not ready after {timeout:.0f}s; waiting for: {waiting}")

    # -- state -------------------------------------------------------------------------------

    def pids(self) -> dict[str, int]:
        pids = {name: proc.pid for name, proc in self.procs.items()}
        for engine in self.engines.engines:
            for i, pid in enumerate(engine.pids()):
                pids[f"{engine.name}.{i}" if i else engine.name] = pid
        return pids

    def write_state(self, *, ready: bool) -> None:
        state = PlatformState(
            launcher_pid=os.getpid(),
            data_dir=str(self.data_dir),
            gateway_url=self.gateway_url,
            engines=self.engines.urls(),
            pids=self.pids(),
            ops_ports=self.ops_ports,
            ready=ready,
            health={
                name: str(health)
                for name, health in (self.supervisor.health() if self.supervisor else {}).items()
            },
        )
        path = state_path(self.data_dir)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state.model_dump(), indent=2))
        tmp.replace(path)
