"""Drive the real Agent Chat UI (langchain-ai/agent-chat-ui) against an Agentbus gateway.

Connects through the UI's setup form, chats, lists threads, regenerates an answer and resumes
a human-in-the-loop interrupt, with screenshots of each step, and logs every HTTP request the
browser makes to the gateway (method, path, status; the JSON body of POSTs) to `calls.txt`.
See README.md next to this file for the set-up (UI build, platform, CORS).

    .venv/bin/python tools/agent-chat-ui/drive.py --ui http://127.0.0.1:3000 \
        --gateway http://127.0.0.1:8080 --api-key-file var/dev-api-key
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from playwright.sync_api import ConsoleMessage, Page, Request, Response, expect, sync_playwright

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
TIMEOUT_MS = 60_000


class CallLog:
    """Every request the page sends to the gateway, in the order they complete."""

    def __init__(self, gateway: str) -> None:
        self.origin = gateway.rstrip("/")
        self.lines: list[str] = []
        self.failures: list[str] = []

    def _path(self, request: Request) -> str:
        parts = urlsplit(request.url)
        return parts.path + (f"?{parts.query}" if parts.query else "")

    def _body(self, request: Request) -> str:
        if request.method not in ("POST", "PATCH", "PUT") or not request.post_data:
            return ""
        try:
            body: Any = json.loads(request.post_data)
        except ValueError:
            return "  <non-JSON body>"
        return "  " + json.dumps(body, separators=(",", ":"), sort_keys=True)[:600]

    def on_response(self, response: Response) -> None:
        request = response.request
        if not request.url.startswith(self.origin) or request.method == "OPTIONS":
            return
        line = f"{request.method} {self._path(request)} {response.status}{self._body(request)}"
        self.lines.append(line)
        if response.status >= 400:
            self.failures.append(line)

    def on_failed(self, request: Request) -> None:
        if not request.url.startswith(self.origin):
            return
        # A stream the UI aborts itself (a new thread, a navigation) is not the gateway's fault.
        line = f"{request.method} {self._path(request)} FAILED ({request.failure})"
        self.lines.append(line)
        if "ERR_ABORTED" not in str(request.failure):
            self.failures.append(line)


def show_errors(message: ConsoleMessage) -> None:
    if message.type == "error":
        print(f"  console: {message.text[:300]}")


def shot(page: Page, out: Path, name: str) -> None:
    page.wait_for_timeout(500)  # let the last tokens paint
    page.screenshot(path=str(out / f"agent-chat-ui-{name}.png"))
    print(f"  screenshot agent-chat-ui-{name}.png")


def send(page: Page, text: str) -> None:
    box = page.get_by_placeholder("Type your message...")
    box.fill(text)
    box.press("Enter")


def wait_idle(page: Page) -> None:
    """The composer's send button is back (a run shows a Cancel button while it streams)."""
    expect(page.get_by_role("button", name="Send")).to_be_visible(timeout=TIMEOUT_MS)


def drive(page: Page, ui: str, gateway: str, api_key: str, assistant: str, out: Path) -> None:
    print("1. connect through the setup form")
    page.goto(f"{ui}/?chatHistoryOpen=true")
    page.locator("#apiUrl").fill(gateway)
    page.locator("#assistantId").fill(assistant)
    page.locator("#apiKey").fill(api_key)
    shot(page, out, "1-connect")
    page.get_by_role("button", name="Continue").click()
    expect(page.get_by_placeholder("Type your message...")).to_be_visible(timeout=TIMEOUT_MS)
    expect(page.get_by_text("Failed to connect to LangGraph server")).to_have_count(0)

    print("2. chat: send a message, the answer streams in")
    hello = f"hello from Agent Chat UI at {time.strftime('%H:%M:%S')}"  # this run's own thread
    send(page, hello)
    reply = page.get_by_text(f"Reply #1: you said '{hello}'.")
    expect(reply).to_be_visible(timeout=TIMEOUT_MS)
    wait_idle(page)
    shot(page, out, "2-chat")

    print("3. thread history lists the thread (the UI refetches 4 s after a new thread)")
    thread_id = page.evaluate("new URL(location.href).searchParams.get('threadId')")
    assert thread_id, "the UI put no threadId in the URL"
    history = page.locator("div.shadow-inner-right")
    expect(history.get_by_role("button", name=hello)).to_be_visible(timeout=TIMEOUT_MS)
    shot(page, out, "3-threads")

    print("4. regenerate the answer (a run from the parent checkpoint)")
    reply.hover()
    page.get_by_role("button", name="Refresh").last.click()
    # A regenerated answer is a second branch: the branch switcher shows 2 / 2.
    expect(page.get_by_text("2 / 2")).to_be_visible(timeout=TIMEOUT_MS)
    wait_idle(page)
    expect(reply).to_be_visible()
    shot(page, out, "4-regenerated")

    print("5. an interrupt: ask to save a note, approve it in the UI")
    send(page, "please save this note")
    expect(page.get_by_role("button", name="Approve")).to_be_visible(timeout=TIMEOUT_MS)
    shot(page, out, "5-interrupt")
    page.get_by_role("button", name="Approve").click()
    expect(page.get_by_text("Note saved.")).to_be_visible(timeout=TIMEOUT_MS)
    wait_idle(page)
    shot(page, out, "6-resumed")

    print("7. reopen the thread from the history panel: its messages load from the gateway")
    page.goto(f"{ui}/?chatHistoryOpen=true&apiUrl={gateway}&assistantId={assistant}")
    history = page.locator("div.shadow-inner-right")
    history.get_by_role("button", name=hello).click()
    expect(page.get_by_text("Note saved.")).to_be_visible(timeout=TIMEOUT_MS)
    # The message is in the chat again (and still titles the thread in the list).
    expect(page.get_by_text(hello, exact=True)).to_have_count(2)
    shot(page, out, "7-reopened")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ui", default="http://127.0.0.1:3000", help="Agent Chat UI URL")
    parser.add_argument("--gateway", default="http://127.0.0.1:8080", help="gateway URL")
    parser.add_argument("--api-key-file", type=Path, default=REPO / "var" / "dev-api-key")
    parser.add_argument("--assistant", default="chat", help="graph name or assistant id")
    parser.add_argument("--screenshots", type=Path, default=REPO / "docs" / "screenshots")
    parser.add_argument("--calls", type=Path, default=HERE / "calls.txt")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    parser.add_argument("--headed", action="store_true")
    args = parser.parse_args()

    api_key = args.api_key_file.read_text().strip()
    args.screenshots.mkdir(parents=True, exist_ok=True)
    calls = CallLog(args.gateway)
    started = time.monotonic()
    ok = False
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=args.chromium, headless=not args.headed)
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.on("response", calls.on_response)
        page.on("requestfailed", calls.on_failed)
        page.on("console", show_errors)
        try:
            drive(page, args.ui, args.gateway, api_key, args.assistant, args.screenshots)
            ok = True
        finally:
            if not ok:
                page.screenshot(path=str(args.screenshots / "agent-chat-ui-failed.png"))
            page.wait_for_timeout(1000)  # the last responses land in the log
            browser.close()
            args.calls.write_text("\n".join(calls.lines) + "\n")
    print(f"{len(calls.lines)} gateway calls logged to {args.calls}")
    if calls.failures:
        print("gateway answered with errors:", *calls.failures, sep="\n  ")
        return 1
    print(f"done in {time.monotonic() - started:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
