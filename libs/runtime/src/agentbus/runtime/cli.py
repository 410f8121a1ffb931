"""`agentbus`: run and inspect the platform from a terminal.

agentbus up [--detach]   start engines and all services; Ctrl-C stops everything
agentbus status          health of every engine and service
agentbus down            stop a platform started with --detach
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from . import __version__
from .health import EngineProbes, Readiness, readiness
from .platform import Platform, PlatformError, pid_alive, read_state, state_path
from .service import StartupError, connect_once
from .settings import ConfigError, Settings, load


def _settings(args: argparse.Namespace) -> Settings:
    if getattr(args, "data_dir", None):
        os.environ["AGENTBUS_DATA_DIR"] = str(args.data_dir)
    return load(Settings)


def _with_platform_urls(settings: Settings) -> Settings:
    """Point at the engines of a platform running from this data dir, unless env says otherwise."""
    state = read_state(settings.data_dir)
    if state is None:
        return settings
    overrides: dict[str, Any] = {}
    for env_name, engine in (
        ("AGENTBUS_NATS_URL", "nats"),
        ("AGENTBUS_POSTGRES_DSN", "postgres"),
        ("AGENTBUS_GRAPH_URL", "graph"),
    ):
        if env_name not in os.environ and engine in state.engines:
            overrides[env_name.removeprefix("AGENTBUS_").lower()] = state.engines[engine]
    return settings.model_copy(update=overrides)


def _gateway_url(settings: Settings) -> str:
    state = read_state(settings.data_dir)
    if state is not None and "AGENTBUS_GATEWAY_PORT" not in os.environ:
        return state.gateway_url
    return f"http://{settings.gateway_host}:{settings.gateway_port}"


# -- up / down ----------------------------------------------------------------------------------


def cmd_up(args: argparse.Namespace) -> int:
    settings = _settings(args)
    if args.detach:
        return _up_detached(settings, args)
    platform = Platform(
        settings.data_dir,
        gateway_port=settings.gateway_port,
        gateway_host=settings.gateway_host,
        echo=None if args.quiet else sys.stdout,
    )
    stop = threading.Event()

    def _on_signal(signum: int, _: Any) -> None:
        stop.set()
        # A second Ctrl-C during start-up aborts the start (Platform.start then cleans up).
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    started = time.monotonic()
    try:
        platform.start(timeout=args.timeout)
    except PlatformError as exc:
        print(f"agentbus: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("agentbus: start-up interrupted; everything stopped", file=sys.stderr)
        return 130
    print(
        f"agentbus: ready in {time.monotonic() - started:.1f}s - gateway {platform.gateway_url}"
        " (Ctrl-C to stop)",
        flush=True,
    )
    try:
        while not stop.is_set():
            stop.wait(1.0)
    except KeyboardInterrupt:
        pass
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # let the shutdown finish
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    print("agentbus: stopping...", flush=True)
    platform.stop()
    print("agentbus: stopped", flush=True)
    return 0


def _up_detached(settings: Settings, args: argparse.Namespace) -> int:
    logs = settings.data_dir / "logs"
    try:
        logs.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        print(
            f"agentbus: data dir {settings.data_dir} is not writable: {exc.strerror}",
            file=sys.stderr,
        )
        return 2
    log_path = logs / "platform.log"
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "agentbus.runtime.cli", "up", "--timeout", str(args.timeout)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, "AGENTBUS_DATA_DIR": str(settings.data_dir)},
        )
    deadline = time.monotonic() + args.timeout + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = [ln for ln in log_path.read_text(errors="replace").splitlines() if ln.strip()]
            print(tail[-1] if tail else f"agentbus: exited with {proc.returncode}", file=sys.stderr)
            return 2
        state = read_state(settings.data_dir)
        if state is not None and state.ready and state.launcher_pid == proc.pid:
            print(f"agentbus: ready - gateway {state.gateway_url} (stop with `agentbus down`)")
            return 0
        time.sleep(0.5)
    print("agentbus: platform did not become ready; see " + str(log_path), file=sys.stderr)
    return 2


def cmd_down(args: argparse.Namespace) -> int:
    settings = _settings(args)
    state = read_state(settings.data_dir)
    if state is None:
        print(f"agentbus: no platform is running from {settings.data_dir}")
        return 0
    if pid_alive(state.launcher_pid):
        os.kill(state.launcher_pid, signal.SIGTERM)
        deadline = time.monotonic() + args.timeout
        while pid_alive(state.launcher_pid) and time.monotonic() < deadline:
            time.sleep(0.2)
    # Whatever the launcher could not stop (it was killed, or timed out) is stopped here.
    leftovers = [pid for pid in state.pids.values() if pid_alive(pid)]
    if pid_alive(state.launcher_pid):
        leftovers.append(state.launcher_pid)
    for pid in leftovers:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    state_path(settings.data_dir).unlink(missing_ok=True)
    print("agentbus: stopped" + (f" ({len(leftovers)} processes killed)" if leftovers else ""))
    return 0


# -- status -------------------------------------------------------------------------------------


async def _status(settings: Settings) -> tuple[Readiness | None, str]:
    try:
        nc = await connect_once(settings, timeout=settings.health_timeout_s)
    except StartupError as exc:
        return None, str(exc)
    probes = EngineProbes(settings)
    try:
        return await readiness(nc, settings, probes), ""
    finally:
        await probes.close()
        await nc.close()


def cmd_status(args: argparse.Namespace) -> int:
    settings = _with_platform_urls(_settings(args))
    report, problem = asyncio.run(_status(settings))
    gateway_url = _gateway_url(settings)
    try:
        alive = httpx.get(f"{gateway_url}/healthz", timeout=settings.health_timeout_s)
        http_ok, http_detail = alive.status_code == 200, f"{gateway_url} HTTP {alive.status_code}"
    except httpx.HTTPError as exc:
        http_ok, http_detail = False, f"{gateway_url} unreachable: {type(exc).__name__}"
    if args.json:
        import json

        out = {
            "ready": bool(report and report.ready and http_ok),
            "error": problem or None,
            "gateway_http": {"ok": http_ok, "detail": http_detail},
            **(report.model_dump() if report else {}),
        }
        print(json.dumps(out, indent=2))
    else:
        if report is None:
            print(f"nats          DOWN  {problem}")
        else:
            for title, group in (("engines", report.engines), ("services", report.services)):
                print(f"{title}:")
                for name, comp in group.items():
                    mark = "ok  " if comp.ok else "DOWN"
                    print(f"  {name:<13} {mark}  {comp.detail}")
        print(f"gateway http  {'ok  ' if http_ok else 'DOWN'}  {http_detail}")
    return 0 if report is not None and report.ready and http_ok else 1


# -- entry point --------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="agentbus", description="Agentbus platform CLI")
    parser.add_argument("--version", action="version", version=f"agentbus {__version__}")
    parser.add_argument("--data-dir", type=Path, help="data directory (AGENTBUS_DATA_DIR, var/)")
    sub = parser.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="start engines and all services")
    up.add_argument("--detach", "-d", action="store_true", help="run in the background")
    up.add_argument("--quiet", "-q", action="store_true", help="do not echo service logs")
    up.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for readiness")
    up.set_defaults(func=cmd_up)

    down = sub.add_parser("down", help="stop a detached platform")
    down.add_argument("--timeout", type=float, default=60.0)
    down.set_defaults(func=cmd_down)

    status = sub.add_parser("status", help="health of every engine and service")
    status.add_argument("--json", action="store_true")
    status.set_defaults(func=cmd_status)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except ConfigError as exc:
        print(f"agentbus: {exc}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    sys.exit(main())
