"""`agentbus`: run and inspect the platform from a terminal.

agentbus up [--detach]   start engines and all services; Ctrl-C stops everything
agentbus status          health of every engine and service
agentbus down            stop a platform started with --detach
agentbus traces --last   the span tree of the last request, across services
agentbus demo            load the sample organisation (--remove takes it out)
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

from agentbus.contracts import SERVICES

from . import __version__
from .health import EngineProbes, Readiness, readiness
from .platform import Platform, PlatformError, pid_alive, read_state, state_path
from .service import StartupError, connect_once
from .service_entry import (
    CommandContext,
    ServiceNotInstalled,
    add_contributed_commands,
    service_entry,
)
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
    if "graph_url" in overrides and "AGENTBUS_GRAPH_SERVER" not in os.environ:
        overrides["graph_server"] = "falkordb"  # the platform's graph is the embedded one
    return settings.model_copy(update=overrides)


def _gateway_url(settings: Settings) -> str:
    state = read_state(settings.data_dir)
    if state is not None and "AGENTBUS_GATEWAY_PORT" not in os.environ:
        return state.gateway_url
    return f"http://{settings.gateway_host}:{settings.gateway_port}"


# -- up / down ----------------------------------------------------------------------------------


def _use_graph_config(args: argparse.Namespace) -> str | None:
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
    settings = _settings(args)
    problem = _use_graph_config(args)
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
            target=_load_sample, args=(_with_platform_urls(settings), platform), daemon=True
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
    from . import demo

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


# -- documents ------------------------------------------------------------------------------------

SUPPORTED = {".txt", ".md", ".markdown", ".html", ".htm", ".pdf"}


def _files(paths: list[Path]) -> list[Path]:
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found.extend(
                sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in SUPPORTED)
            )
        elif path.is_file():
            found.append(path)
        else:
            raise FileNotFoundError(f"no such file or directory: {path}")
    return found


def _bar(done: int, total: int, width: int = 24) -> str:
    filled = round(width * done / total) if total else 0
    return "[" + "#" * filled + "." * (width - filled) + "]"


async def _ingest(settings: Settings, args: argparse.Namespace) -> int:
    from agentbus.contracts import DocumentIndexed, IngestProgress

    from .clients.ingest import follow as follow_progress
    from .clients.ingest import submit_file

    files = _files(args.paths)
    if not files:
        print("agentbus: no supported files (.txt .md .html .pdf) found", file=sys.stderr)
        return 2
    nc = await connect_once(settings)
    failures = 0
    try:
        submissions = []
        for path in files:
            sub = await submit_file(nc, args.tenant, path)
            submissions.append((path, sub))
            note = " (same bytes already queued: unchanged)" if sub.duplicate else ""
            print(f"submitted {path} as {sub.document_id}{note}")
        if not args.wait:
            return 0
        for path, sub in submissions:
            async for event in follow_progress(
                nc, sub.document_id, sha256=sub.sha256, timeout=args.timeout
            ):
                if isinstance(event, IngestProgress):
                    done, total = event.done, event.total
                    line = f"{path.name[:32]:<32} {_bar(done, total)} {event.stage} {done}/{total}"
                    print("\r" + line.ljust(80), end="", file=sys.stderr, flush=True)
                    continue
                print("\r" + " " * 80 + "\r", end="", file=sys.stderr)
                if isinstance(event, DocumentIndexed):
                    state = "unchanged" if event.unchanged else "indexed"
                    print(
                        f"{path}: {state} - {event.chunks} chunks, {event.pages} pages, "
                        f"{event.entities} entities"
                    )
                else:
                    print(f"{path}: FAILED - {event.reason}")
                    failures += 1
    finally:
        await nc.close()
    return 1 if failures else 0


def cmd_ingest(args: argparse.Namespace) -> int:
    settings = _with_platform_urls(_settings(args))
    try:
        return asyncio.run(_ingest(settings, args))
    except (FileNotFoundError, StartupError, TimeoutError) as exc:
        print(f"agentbus: {exc}", file=sys.stderr)
        return 2


async def _search(settings: Settings, args: argparse.Namespace) -> tuple[int, str]:
    from agentbus.contracts import ErrorReply, SearchRequest, SearchResult
    from agentbus.contracts import subjects as s

    request = SearchRequest(tenant_id=args.tenant, query=args.query, mode=args.mode, top_k=args.k)
    nc = await connect_once(settings)
    try:
        reply = await nc.request(
            s.RETRIEVAL_SEARCH, request.model_dump_json().encode(), timeout=args.timeout
        )
    finally:
        await nc.close()
    try:
        result = SearchResult.model_validate_json(reply.data)
    except ValueError:  # the service could not read the request: an ErrorReply
        return 2, ErrorReply.model_validate_json(reply.data).error
    if args.json:
        return 0, result.model_dump_json(indent=2)
    if result.error:
        return 2, result.error
    if not result.hits:
        return 0, f"no results for {args.query!r}"
    lines = []
    for rank, hit in enumerate(result.hits, 1):
        where = f"p.{hit.page}" if hit.page is not None else f"chunk {hit.chunk_index}"
        snippet = " ".join(hit.text.split())[:100]
        lines.append(
            f"{rank:>2}. {hit.score:.4f}  {hit.title or hit.document_id}  {where}  "
            f"[{hit.document_id}]\n      {snippet}"
        )
    return 0, "\n".join(lines)


def cmd_search(args: argparse.Namespace) -> int:
    settings = _with_platform_urls(_settings(args))
    try:
        code, text = asyncio.run(_search(settings, args))
    except StartupError as exc:
        print(f"agentbus: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # no retrieval service answering, mostly
        print(f"agentbus: search failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    print(text, file=sys.stdout if code == 0 else sys.stderr)
    return code


# -- ask ------------------------------------------------------------------------------------------


def cmd_ask(args: argparse.Namespace) -> int:
    """Stream an answer through the gateway with the dev key, as a browser would."""
    import json

    settings = _settings(args)
    key_file = settings.data_dir / "dev-api-key"
    key = os.environ.get("AGENTBUS_API_KEY") or (
        key_file.read_text().strip() if key_file.exists() else ""
    )
    if not key:
        print(
            f"agentbus: no API key (set AGENTBUS_API_KEY or run `agentbus up`: {key_file})",
            file=sys.stderr,
        )
        return 2
    body: dict[str, Any] = {"message": args.question}
    if args.thread:
        body["thread_id"] = args.thread
    url = f"{_gateway_url(settings)}/api/v1/chat/stream"
    event, data_lines, code = "", [], 0
    try:
        with httpx.stream(
            "POST",
            url,
            json=body,
            headers={"x-api-key": key},
            timeout=httpx.Timeout(10.0, read=None),
        ) as response:
            if response.status_code != 200:
                detail = response.read().decode(errors="replace")
                print(
                    f"agentbus: gateway answered {response.status_code}: {detail}", file=sys.stderr
                )
                return 2
            for line in response.iter_lines():
                if line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: "):
                    data_lines.append(line[6:])
                elif line == "" and event:
                    data = json.loads("".join(data_lines) or "null")
                    if args.json:
                        print(json.dumps({"event": event, "data": data}), flush=True)
                    elif event == "token":
                        print(data["text"], end="", flush=True)
                    elif event == "response":
                        cites = data.get("citations") or []
                        print("\n\nSources:" if cites else "")
                        for i, c in enumerate(cites, 1):
                            # The number the answer's [n] markers use, and where it points.
                            page = f", page {c['page']}" if c.get("page") is not None else ""
                            where = c.get("url") or f"document {c.get('document_id')}"
                            print(
                                f"[{c.get('ref', i)}] {c.get('title') or c.get('document_id')}"
                                f"{page} — {where}"
                            )
                        if data.get("status") != "success":
                            code = 1
                    elif event == "error":
                        print(f"\nagentbus: {data.get('message', data)}", file=sys.stderr)
                        code = 1
                    event, data_lines = "", []
    except httpx.HTTPError as exc:
        print(f"agentbus: cannot reach the gateway at {url}: {type(exc).__name__}", file=sys.stderr)
        return 2
    return code


# -- demo -----------------------------------------------------------------------------------------


def cmd_demo(args: argparse.Namespace) -> int:
    """Load (or --remove) the sample organisation; the logic lives in demo.py."""
    from . import demo

    return demo.run(args, _with_platform_urls(_settings(args)))


# -- traces ---------------------------------------------------------------------------------------


def cmd_traces(args: argparse.Namespace) -> int:
    """Print a trace's span tree across services from the local span files."""
    import json

    from . import trace_view as tv

    directory = _settings(args).traces_dir
    try:
        # A trace id or run id narrows what is parsed to the lines that mention it.
        if args.run:
            mention = tv.load_spans(directory, [f'"{args.run}"'])
            ids = {s.trace_id for s in mention if s.attributes.get("agentbus.run_id") == args.run}
            spans = tv.load_spans(directory, sorted(ids)) if ids else []
        elif args.trace_id and len(args.trace_id) == 32:
            spans = tv.load_spans(directory, [args.trace_id.lower()])
        else:
            spans = tv.load_spans(directory)
        if args.list:
            found = tv.recent(spans, args.limit, requests_only=False)
            if args.json:
                print(json.dumps([tv.to_json(t) for t in found], indent=2))
            else:
                print(tv.render_list(found) or "no traces yet")
            return 0
        if args.run:
            traces = tv.find_run(spans, args.run)
        elif args.trace_id:
            traces = [tv.find_trace(spans, args.trace_id)]
        elif args.last:
            traces = [tv.last_trace(spans)]
        else:
            print("agentbus: give a TRACE_ID, --run RUN_ID, --last or --list", file=sys.stderr)
            return 2
    except tv.TraceViewError as exc:
        print(f"agentbus: {exc}", file=sys.stderr)
        return 1
    if args.json:
        out = [tv.to_json(t) for t in traces]
        print(json.dumps(out[0] if len(out) == 1 else out, indent=2, default=str))
    else:
        print("\n\n".join(tv.render(t) for t in traces))
    return 0


# -- asyncapi -------------------------------------------------------------------------------------


def asyncapi_document(service: str) -> dict[str, Any]:
    """The AsyncAPI document of an installed service, generated from its FastStream broker."""
    return service_entry(service).asyncapi()


def cmd_asyncapi(args: argparse.Namespace) -> int:
    import json

    try:
        document = asyncapi_document(args.service)
    except ServiceNotInstalled as exc:
        print(f"agentbus: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(document, indent=2))
    return 0


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

    tenant = os.environ.get("AGENTBUS_TENANT", "dev")
    ingest = sub.add_parser("ingest", help="upload files or folders for indexing")
    ingest.add_argument("paths", nargs="+", type=Path)
    ingest.add_argument("--tenant", default=tenant, help="tenant id (AGENTBUS_TENANT, dev)")
    ingest.add_argument("--wait", action="store_true", help="show progress until indexed")
    ingest.add_argument("--timeout", type=float, default=600.0)
    ingest.set_defaults(func=cmd_ingest)

    search = sub.add_parser("search", help="search the indexed documents")
    search.add_argument("query")
    search.add_argument("--mode", choices=["hybrid", "vector", "keyword"], default="hybrid")
    search.add_argument("-k", type=int, default=5, help="number of hits")
    search.add_argument("--tenant", default=tenant, help="tenant id (AGENTBUS_TENANT, dev)")
    search.add_argument("--json", action="store_true")
    search.add_argument("--timeout", type=float, default=30.0)
    search.set_defaults(func=cmd_search)

    ask = sub.add_parser("ask", help="ask a question through the gateway (streams the answer)")
    ask.add_argument("question")
    ask.add_argument("--thread", help="continue this thread")
    ask.add_argument("--json", action="store_true", help="one JSON object per SSE event")
    ask.set_defaults(func=cmd_ask)

    from .demo import add_parser as add_demo_parser

    add_demo_parser(sub, tenant).set_defaults(func=cmd_demo)

    traces = sub.add_parser(
        "traces", help="print a trace's span tree across services (from the local span files)"
    )
    traces.add_argument("trace_id", nargs="?", help="trace id (or a unique prefix of 8+ digits)")
    which = traces.add_mutually_exclusive_group()
    which.add_argument("--run", metavar="RUN_ID", help="the trace(s) of this run")
    which.add_argument("--last", action="store_true", help="the most recent request's trace")
    which.add_argument("--list", action="store_true", help="list the most recent traces")
    traces.add_argument("--limit", type=int, default=10, help="how many traces --list shows")
    traces.add_argument("--json", action="store_true", help="the tree as JSON")
    traces.set_defaults(func=cmd_traces)

    # Commands the installed service packages add (analytics: `eval`).
    add_contributed_commands(sub, CommandContext(_settings, _with_platform_urls, tenant))

    spec = sub.add_parser("asyncapi", help="print a service's AsyncAPI document (from its code)")
    spec.add_argument("service", choices=list(SERVICES))
    spec.set_defaults(func=cmd_asyncapi)
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
