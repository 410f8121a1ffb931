"""`agentbus ingest` and `agentbus search`: documents in and passages out, over the bus as any
system would."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from ..settings import Settings
from .context import settings_of, with_platform_urls


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser], tenant: str) -> None:
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

    from ..clients.ingest import follow as follow_progress
    from ..clients.ingest import submit_file

    files = _files(args.paths)
    if not files:
        print("agentbus: no supported files (.txt .md .html .pdf) found", file=sys.stderr)
        return 2
    from ..chassis import connect_once

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
    from ..chassis import StartupError  # the chassis only when the command runs

    settings = with_platform_urls(settings_of(args))
    try:
        return asyncio.run(_ingest(settings, args))
    except (FileNotFoundError, StartupError, TimeoutError) as exc:
        print(f"agentbus: {exc}", file=sys.stderr)
        return 2


async def _search(settings: Settings, args: argparse.Namespace) -> tuple[int, str]:
    from agentbus.contracts import ErrorReply, SearchRequest, SearchResult
    from agentbus.contracts import subjects as s

    request = SearchRequest(tenant_id=args.tenant, query=args.query, mode=args.mode, top_k=args.k)
    from ..chassis import connect_once

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
    from ..chassis import StartupError  # the chassis only when the command runs

    settings = with_platform_urls(settings_of(args))
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
