"""`agentbus traces`: a trace's span tree across services, from the local span files."""

from __future__ import annotations

import argparse
import sys

from .context import settings_of


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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


def cmd_traces(args: argparse.Namespace) -> int:
    """Print a trace's span tree across services from the local span files."""
    import json

    from .. import trace_view as tv

    directory = settings_of(args).traces_dir
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
