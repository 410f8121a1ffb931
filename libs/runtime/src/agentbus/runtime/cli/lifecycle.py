"""`agentbus up`, `down` and `status`: start the platform (in the foreground or detached),
stop it, and say what is healthy."""

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
from typing import TYPE_CHECKING, Any

import httpx

from ..platform import Platform, PlatformError, pid_alive, read_state, state_path
from ..settings import Settings
from .context import gateway_url, settings_of, with_platform_urls

if TYPE_CHECKING:
    from ..health import Readiness


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    up = sub.add_parser("up", help="start engines and all services")
    up.add_argument("--detach", "-d", action="store_true", help="run in the background")
    up.add_argument("--quiet", "-q", action="store_true", help="do not echo service logs")
    up.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for readiness")
    up.add_argument(
        "--sample",
        action="store_true",
        help="once ready, load the sample organisation into tenant dev (as `agentbus demo`)",
    )
    up.add_argument(
        "--config",
        type=Path,
        help="langgraph.json with your graphs (default ./langgraph.json if present, "
        "else the built-in graphs only)",
    )
    up.set_defaults(func=cmd_up)

    down = sub.add_parser("down", help="stop a detached platform")
    down.add_argument("--timeout", type=float, default=60.0)
    down.set_defaults(func=cmd_down)

    status = sub.add_parser("status", help="health of every engine and service")
    status.add_argument("--json", action="store_true")
    status.set_defaults(func=cmd_status)


def use_graph_config(args: argparse.Namespace) -> str | None:
    """`--config PATH`, else ./langgraph.json when present, as AGENTBUS_LANGGRAPH_CONFIG for the
    orchestrator (an absolute path: services do not share the launcher's working directory).
    Returns an error message for a missing file."""
    path: Path | None = args.config
    if path is None and "AGENTBUS_LANGGRAPH_CONFIG" not in os.environ:
        default = Path("langgraph.json")
        path = default if default.is_file() else None
    if path is None:
        return None
    if not path.is_file():
        return f"graph config {path} does not exist"
    os.environ["AGENTBUS_LANGGRAPH_CONFIG"] = str(path.resolve())
    return None


def cmd_up(args: argparse.Namespace) -> int:
    settings = settings_of(args)
    problem = use_graph_config(args)
    if problem is not None:
        print(f"agentbus: {problem}", file=sys.stderr)
        return 2
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
    if args.sample:
        threading.Thread(
            target=_load_sample, args=(with_platform_urls(settings), platform), daemon=True
        ).start()
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


def _load_sample(settings: Settings, platform: Platform) -> None:
    """`up --sample`: what `agentbus demo` does, into tenant dev, once the platform is ready; the
    platform keeps running whatever happens here (a failure is printed, `agentbus demo` retries)."""
    from .. import demo

    def echo(line: str) -> None:
        print(line, flush=True)

    try:
        asyncio.run(demo.load(settings, "dev", demo.default_samples_dir(), echo, 600.0))
    except Exception as exc:  # reported; the platform stays up
        print(f"agentbus: loading the sample failed ({exc}); run `agentbus demo`", flush=True)
        return
    print(
        f"agentbus: the sample organisation is in tenant dev - open {platform.gateway_url} and "
        f"sign in with the API key in {settings.data_dir / 'dev-api-key'}",
        flush=True,
    )


def _up_detached(settings: Settings, args: argparse.Namespace) -> int:
    # Checked here too: a second launcher's own error would land in platform.log amid the
    # running platform's lines, and its last line could be any of theirs.
    running = read_state(settings.data_dir)
    if running is not None and pid_alive(running.launcher_pid):
        print(
            f"agentbus: a platform is already running from {settings.data_dir}"
            f" (pid {running.launcher_pid}); stop it with `agentbus down`",
            file=sys.stderr,
        )
        return 2
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
            [
                sys.executable,
                *("-m", "agentbus.runtime.cli", "up", "--timeout", str(args.timeout)),
                *(["--sample"] if args.sample else []),
            ],
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
    settings = settings_of(args)
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


async def _status(settings: Settings) -> tuple[Readiness | None, str]:
    # Imported here: the chassis and the engine probes cost a second at every CLI start.
    from ..chassis import StartupError, connect_once
    from ..health import EngineProbes, readiness

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
    settings = with_platform_urls(settings_of(args))
    report, problem = asyncio.run(_status(settings))
    url = gateway_url(settings)
    try:
        alive = httpx.get(f"{url}/healthz", timeout=settings.health_timeout_s)
        http_ok, http_detail = alive.status_code == 200, f"{url} HTTP {alive.status_code}"
    except httpx.HTTPError as exc:
        http_ok, http_detail = False, f"{url} unreachable: {type(exc).__name__}"
    # What the launcher's supervisor says (restarting, failed after a crash loop), if it runs.
    state = read_state(settings.data_dir)
    supervision = state.health if state is not None and pid_alive(state.launcher_pid) else {}
    if args.json:
        import json

        out = {
            "ready": bool(report and report.ready and http_ok),
            "error": problem or None,
            "gateway_http": {"ok": http_ok, "detail": http_detail},
            "supervision": supervision,
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
        for name, health in sorted(supervision.items()):
            if health != "running":
                print(f"supervisor    {name} {health}")
    return 0 if report is not None and report.ready and http_ok else 1
