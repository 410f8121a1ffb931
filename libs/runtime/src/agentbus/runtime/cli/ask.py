"""`agentbus ask`: a question through the gateway with the dev key, the answer streamed."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

import httpx

from .context import gateway_url, settings_of


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    ask = sub.add_parser("ask", help="ask a question through the gateway (streams the answer)")
    ask.add_argument("question")
    ask.add_argument("--thread", help="continue this thread")
    ask.add_argument("--json", action="store_true", help="one JSON object per SSE event")
    ask.set_defaults(func=cmd_ask)


def cmd_ask(args: argparse.Namespace) -> int:
    """Stream an answer through the gateway with the dev key, as a browser would."""
    import json

    from httpx_sse import EventSource

    settings = settings_of(args)
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
    url = f"{gateway_url(settings)}/api/v1/chat/stream"
    code = 0
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
            for sse in EventSource(response).iter_sse():
                data = json.loads(sse.data or "null")
                if args.json:
                    print(json.dumps({"event": sse.event, "data": data}), flush=True)
                elif sse.event == "token":
                    print(data["text"], end="", flush=True)
                elif sse.event == "response":
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
                elif sse.event == "error":
                    print(f"\nagentbus: {data.get('message', data)}", file=sys.stderr)
                    code = 1
    except httpx.HTTPError as exc:
        print(f"agentbus: cannot reach the gateway at {url}: {type(exc).__name__}", file=sys.stderr)
        return 2
    return code
