"""The web app in a real browser (Debian's Chromium driven by Playwright) against the real
platform: register and sign in, upload a PDF and watch its stages reach "indexed", ask about it
(routing, a tool step, streamed text, a citation that opens page 2), reload mid-answer and see
it finish, dashboards drawn from published domain events, a run's trace as a waterfall. Every
page is checked for console errors. Each test saves a screenshot: into the README's
docs/screenshots with UPDATE_SCREENSHOTS=1, else into a temporary directory.

One browser for the module; the tests run in order on one signed-in page (each builds on the
previous one: the document the chat cites, the run the trace shows).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import nats
import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, Route, expect, sync_playwright

from agentbus.contracts import DomainEvent, EvaluationScored
from agentbus.contracts import subjects as s
from agentbus.runtime.platform import Platform

from .knowledge import pdf_bytes

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "docs" / "screenshots"
CHROMIUM = os.environ.get("AGENTBUS_CHROMIUM", "/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PASSWORD = "Web-app-test-1"
WAIT_MS = 120_000  # upper bound on waiting for the platform (indexing, a run), not a speed check
expect.set_options(timeout=WAIT_MS)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists() or not (ROOT / "web" / "dist" / "index.html").exists():
        pytest.fail(f"needs {CHROMIUM} and web/dist (both made by `make setup`)")
    with sync_playwright() as pw:
        launched = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield launched
        launched.close()


class Console:
    """Errors the page logged or threw (each test asserts there were none), and screenshots."""

    def __init__(self, page: Page, shots: Path) -> None:
        self.page = page
        self.shots = shots
        self.errors: list[str] = []
        page.on("console", self._console)
        page.on("pageerror", lambda exc: self.errors.append(f"pageerror: {exc}"))

    def _console(self, msg: ConsoleMessage) -> None:
        if msg.type == "error":
            self.errors.append(f"{msg.text} at {msg.location.get('url')}")

    def shot(self, name: str) -> None:
        self.shots.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(self.shots / f"{name}.png"), full_page=False)

    def check(self, *expected: str) -> None:
        """No errors but the `expected` ones (Chromium logs every 4xx a test provokes)."""
        errors, self.errors = self.errors, []
        assert [e for e in errors if not any(x in e for x in expected)] == []


@pytest.fixture(scope="module")
def app(platform: Platform, browser: Browser, shots: Path) -> Iterator[tuple[Page, Console]]:
    context = browser.new_context(
        base_url=platform.gateway_url, viewport={"width": 1280, "height": 860}
    )
    context.set_default_timeout(WAIT_MS)
    page = context.new_page()
    console = Console(page, shots)
    yield page, console
    context.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where screenshots go: the README's `docs/screenshots` with UPDATE_SCREENSHOTS=1,
    else a temporary directory (a test run leaves the working tree as it was). Not an
    AGENTBUS_ variable: the root conftest drops those before any test reads them."""
    if os.environ.get("UPDATE_SCREENSHOTS") == "1":
        return SHOTS
    return tmp_path_factory.mktemp("screenshots")


def test_register_and_sign_in(app: tuple[Page, Console]) -> None:
    page, console = app
    page.goto("/")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    page.get_by_role("button", name="Create an account").click()
    page.get_by_label("Email").fill(f"web-{uuid.uuid4().hex[:8]}@example.com")
    # The password rules follow the typing; the server's 422 lands on the field.
    page.get_by_label("Password", exact=True).fill("short")
    rules = page.get_by_role("list", name="Password rules")
    expect(rules.get_by_text("At least 8 characters")).to_contain_text("missing")
    page.get_by_role("button", name="Create account").click()
    expect(page.locator(".field-error")).to_contain_text("Password must contain")
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    expect(rules.locator("li.ok")).to_have_count(5)
    console.shot("sign-in")
    for _ in range(3):  # the suite's register limit is low; a 429 says when to try again
        page.get_by_role("button", name="Create account").click()
        outcome = page.locator("nav[aria-label=Pages], p.error").first
        expect(outcome).to_be_visible()
        if page.locator("nav[aria-label=Pages]").count():
            break
        retry = page.evaluate("() => document.querySelector('p.error')?.textContent ?? ''")
        assert "Too many" in retry, retry
        page.wait_for_timeout(int(retry.split("in ")[-1].split(" s")[0]) * 1000 + 500)
    expect(page.get_by_role("link", name="Chat")).to_have_attribute("aria-current", "page")
    console.check("status of 422 (Unprocessable Entity)", "status of 429 (Too Many Requests)")


def test_upload_a_pdf_and_watch_it_reach_indexed(app: tuple[Page, Console]) -> None:
    page, console = app
    page.get_by_role("link", name="Documents").click()
    pdf = pdf_bytes(
        [
            "Office plants. The ficus in the lobby is watered on Tuesdays.",
            "Parking. Visitors park on level minus two and register at the front desk.",
        ]
    )
    page.get_by_label("Files to upload").set_input_files(
        [
            {"name": "facilities.pdf", "mimeType": "application/pdf", "buffer": pdf},
            {"name": "notes.md", "mimeType": "text/markdown", "buffer": b"# Notes\n\nHello."},
        ]
    )
    uploads = page.get_by_test_id("upload")
    expect(uploads).to_have_count(2)
    pdf_row = uploads.filter(has_text="facilities.pdf")
    expect(pdf_row).to_have_attribute("data-outcome", "indexed")
    expect(pdf_row).to_contain_text("2 pages")
    # Every stage's bar is full once the document is indexed.
    for stage in ("received", "parsed", "chunked", "embedded", "stored", "graphed"):
        bar = page.get_by_label(f"facilities.pdf: {stage}")
        assert bar.evaluate("el => el.value") == 1, stage
    expect(uploads.filter(has_text="notes.md")).to_have_attribute("data-outcome", "indexed")
    row = page.get_by_role("row").filter(has_text="facilities")
    expect(row.locator(".status")).to_have_text("indexed")
    console.shot("documents")
    # Delete asks first, then the document leaves the list.
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Delete Notes").click()
    expect(page.get_by_role("row").filter(has_text="Notes")).to_have_count(0)
    expect(row).to_have_count(1)
    console.check()


def test_pipeline_settings_show_field_errors_and_save(app: tuple[Page, Console]) -> None:
    page, console = app
    page.get_by_role("link", name="Documents").click()
    page.get_by_text("Ingest pipeline settings").click()
    form = page.get_by_role("form", name="Ingest pipeline settings")
    top_k = form.get_by_label("Results (top k)")
    expect(top_k).to_have_value("5")
    # A value the gateway refuses comes back as a 422 placed on its field; nothing is saved.
    top_k.fill("0")
    form.get_by_role("button", name="Save settings").click()
    expect(top_k).to_have_attribute("aria-invalid", "true")
    expect(form.locator(".field-error")).to_be_visible()
    # A retrieval change is saved as a new revision and re-indexes nothing.
    top_k.fill("6")
    form.get_by_role("button", name="Save settings").click()
    expect(form.get_by_role("status")).to_contain_text("Saved (revision 1)")
    expect(page.get_by_role("status", name="Re-index")).to_have_count(0)
    saved = page.request.get("/api/v1/settings/pipeline", headers=auth(page)).json()
    assert saved["retrieval"]["top_k"] == 6 and saved["revision"] == 1, saved
    console.shot("pipeline-settings")
    console.check("status of 422 (Unprocessable Entity)")


# Records each distinct text of the newest answer while it grows (the stream, token by token).
WATCH_ANSWER = """() => {
  window.__answerTexts = [];
  const seen = () => {
    const answers = document.querySelectorAll('.messages li.ai');
    const text = answers.length ? answers[answers.length - 1].textContent : '';
    const all = window.__answerTexts;
    if (text && all[all.length - 1] !== text) all.push(text);
  };
  const all = {subtree: true, childList: true, characterData: true};
  new MutationObserver(seen).observe(document.body, all);
}"""


def ask(page: Page, question: str) -> None:
    page.get_by_label("Message").fill(question)
    page.get_by_label("Message").press("Enter")


def test_ask_about_it_with_routing_tools_streaming_and_a_citation(
    app: tuple[Page, Console],
) -> None:
    page, console = app
    page.get_by_role("link", name="Chat").click()
    expect(page.get_by_role("combobox", name="Assistant")).to_contain_text("agent")
    page.evaluate(WATCH_ANSWER)
    ask(page, "Where do visitors park?")
    expect(page.get_by_test_id("timer")).to_be_visible()
    expect(page.get_by_role("button", name="Stop")).to_be_visible()
    answer = page.locator(".messages li.ai").last
    expect(answer.get_by_role("list", name="Sources")).to_be_visible()
    expect(answer).to_contain_text("level minus two")
    expect(page.get_by_role("button", name="Send")).to_be_visible()
    expect(page.get_by_test_id("routing")).to_contain_text("insights")  # the documents specialist
    # The status bar: model, group and the task type the supervisor classified.
    expect(page.get_by_test_id("model")).to_contain_text("local")
    expect(page.get_by_test_id("model")).to_contain_text("lookup")
    steps = page.get_by_role("list", name="Tool steps").get_by_role("listitem")
    expect(steps.first).to_contain_text("search_documents")
    expect(steps.first).to_contain_text("→")
    texts = page.evaluate("() => window.__answerTexts")
    # Streamed: the answer was on screen in several growing versions before it was complete.
    assert len(texts) >= 3, texts
    assert len(texts[0]) < len(texts[-1])
    # The thread is in the list, titled by its question; the URL names it.
    expect(page.get_by_role("complementary", name="Conversations")).to_contain_text(
        "Where do visitors park?"
    )
    assert "#/chat/" in page.url
    console.shot("chat")
    # A numbered citation opens the cited document at page 2.
    cite = answer.locator("button.cite").filter(has_text="1").first
    expect(cite).to_have_attribute("aria-label", re.compile(r"^Source 1: .+, page 2$"))
    cite.click()
    viewer = page.locator("dialog.viewer")
    expect(viewer).to_have_attribute("data-page", "2")
    expect(viewer.locator("iframe")).to_have_attribute("src", re.compile(r"^blob:.*#page=2$"))
    viewer.get_by_role("button", name="Close").click()
    console.check()


def test_a_reload_mid_answer_reattaches_and_the_answer_finishes(
    app: tuple[Page, Console],
) -> None:
    page, console = app
    ask(page, "Who waters the ficus in the lobby, and when?")
    # Mid-answer: the run is going (its search step is on screen) and has not ended.
    expect(page.get_by_role("list", name="Tool steps")).to_be_visible()
    expect(page.get_by_role("button", name="Stop")).to_be_visible()
    page.reload()
    answer = page.locator(".messages li.ai").last
    expect(answer).to_contain_text("Tuesdays")
    expect(answer.get_by_role("list", name="Sources")).to_be_visible()
    expect(page.get_by_role("button", name="Stop")).to_have_count(0)
    # The history: search the thread titles, start a new chat, come back to this one.
    threads = page.get_by_role("complementary", name="Conversations")
    threads.get_by_role("searchbox").fill("no such talk")
    expect(threads).to_contain_text("No conversations match")
    threads.get_by_role("searchbox").fill("visitors")
    thread = threads.get_by_role("link", name="Where do visitors park?")
    expect(thread).to_have_attribute("aria-current", "page")
    page.get_by_role("button", name="+ New chat").click()
    expect(page.locator(".messages li.ai")).to_have_count(0)
    thread.click()
    expect(page.locator(".messages li.ai").last).to_contain_text("Tuesdays")
    console.check()


def with_input(page: Page, extra: dict[str, Any]) -> None:
    """The browser's next run request carries `extra` in its input (the chat sends only
    messages; the diagnostic `steps` assistant reads `steps` and `delay`)."""

    def rewrite(route: Route) -> None:
        body = route.request.post_data_json
        body["input"] = {**(body.get("input") or {}), **extra}
        route.continue_(post_data=json.dumps(body))

    page.route("**/threads/*/runs/stream", rewrite, times=1)


def auth(page: Page) -> dict[str, str]:
    token = page.evaluate("() => JSON.parse(localStorage.getItem('agentbus.session')).access")
    return {"Authorization": f"Bearer {token}"}


def run_status(page: Page, run_id: str) -> str:
    thread_id = page.url.split("#/chat/")[-1]
    resp = page.request.get(f"/threads/{thread_id}/runs/{run_id}", headers=auth(page))
    assert resp.status == 200, resp.text()
    return str(resp.json()["status"])


def test_stop_cancels_a_run_that_would_wait_for_minutes(app: tuple[Page, Console]) -> None:
    page, console = app
    page.get_by_role("button", name="+ New chat").click()
    page.get_by_label("Assistant").select_option(label="steps")
    # 100 steps of a minute each: only Stop ends this run, however slow the machine is.
    with_input(page, {"steps": 100, "delay": 60})
    ask(page, "Count slowly")
    # The status bar names the run once the platform has created it; Stop then cancels it.
    run = page.get_by_test_id("run")
    expect(run).to_be_visible()
    run_id = str(run.get_attribute("href")).rsplit("/", 1)[-1]
    assert run_status(page, run_id) in ("pending", "running")
    page.get_by_role("button", name="Stop").click()
    expect(page.get_by_role("button", name="Send")).to_be_visible()
    expect(page.get_by_test_id("timer")).to_have_count(0)
    for _ in range(100):  # the orchestrator ends it (LangGraph calls a cancelled run this)
        if run_status(page, run_id) == "interrupted":
            break
        page.wait_for_timeout(200)
    assert run_status(page, run_id) == "interrupted"
    expect(page.get_by_role("alert")).to_have_count(0)
    # The SDK's stop already cancelled it: the page's own cancel after it may find it ended.
    console.check("status of 409 (Conflict)")


def test_a_failed_run_shows_an_error_with_retry_and_retry_runs_again(
    app: tuple[Page, Console],
) -> None:
    page, console = app
    page.get_by_role("button", name="+ New chat").click()
    page.get_by_label("Assistant").select_option(label="steps")
    # A delay that is not a number fails the run's node on the platform: a real error run.
    with_input(page, {"delay": "not a number"})
    ask(page, "Count once")
    toast = page.get_by_role("alert").filter(has=page.get_by_role("button", name="Retry"))
    expect(toast).to_be_visible()
    failed = str(page.get_by_test_id("run").get_attribute("href")).rsplit("/", 1)[-1]
    # The toast comes with the run's `error` event; its record is settled from the `end` after.
    for _ in range(100):
        if run_status(page, failed) == "error":
            break
        page.wait_for_timeout(200)
    assert run_status(page, failed) == "error"
    console.shot("chat-error")
    # Retry sends the same message again. The thread's state kept the bad delay (the steps
    # graph stores its input), so this run's input sets a good one: one step, then success.
    with_input(page, {"delay": 0.2})
    toast.get_by_role("button", name="Retry").click()
    expect(toast).to_have_count(0)
    run = page.get_by_test_id("run")
    expect(run).not_to_have_attribute("href", f"#/runs/{failed}")
    expect(page.get_by_role("button", name="Send")).to_be_visible()
    retried = str(run.get_attribute("href")).rsplit("/", 1)[-1]
    for _ in range(100):  # the stream has ended; the run's record follows
        if run_status(page, retried) == "success":
            break
        page.wait_for_timeout(200)
    assert run_status(page, retried) == "success"
    page.get_by_label("Assistant").select_option(label="agent")
    console.check("graph_error: The run failed")  # the SDK logs the failed run it reports


def publish_delivery_events(platform: Platform, tenant: str) -> None:
    """A fortnight of deployments, commits and one incident, as a CI system would send them, and a
    burst of deployments today."""

    async def publish() -> None:
        nc = await nats.connect(platform.engines.urls()["nats"])
        js = nc.jetstream()
        now = datetime.now(UTC)
        for day in range(14):
            at = now - timedelta(days=day, hours=2)
            sha = f"c{day:04d}"
            events: list[tuple[str, datetime, dict[str, Any]]] = [
                ("commit", at - timedelta(hours=5), {"sha": sha, "service": "api"}),
                ("deployment", at, {"service": "api", "commits": [sha], "status": "success"}),
            ]
            if day == 3:
                events.append(
                    ("incident", at + timedelta(hours=1), {"status": "open", "incident_id": "i1"})
                )
                events.append(
                    (
                        "incident",
                        at + timedelta(hours=3),
                        {"status": "resolved", "incident_id": "i1"},
                    )
                )
            if day == 0:  # a burst today, far above one a day: the dashboard flags it
                events.extend(
                    ("deployment", at + timedelta(minutes=i), {"service": "api", "commits": []})
                    for i in range(1, 9)
                )
            for kind, ts, data in events:
                event = DomainEvent(tenant_id=tenant, source="ci", type=kind, ts=ts, data=data)
                await js.publish(
                    s.domain_event(tenant, "ci", kind), event.model_dump_json().encode()
                )
        await nc.close()

    # Playwright's sync API runs its own event loop in this thread: publish from another one.
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, publish()).result()


def test_dashboards_draw_charts_from_published_events(
    app: tuple[Page, Console], platform: Platform
) -> None:
    page, console = app
    token = page.evaluate("() => JSON.parse(localStorage.getItem('agentbus.session')).access")
    me = page.request.get("/api/v1/users/me", headers={"Authorization": f"Bearer {token}"})
    publish_delivery_events(platform, me.json()["tenant"]["id"])
    page.get_by_role("link", name="Dashboards").click()
    frequency = page.locator(".kpi").filter(has_text="Deployment frequency").locator("strong")
    # Analytics stores events in batches: reload until the deployments are counted.
    for _ in range(60):
        expect(frequency).to_be_visible()
        if not frequency.inner_text().startswith(("—", "0.00")):
            break
        page.wait_for_timeout(1000)
        page.reload()
    assert frequency.inner_text().startswith("0.7"), frequency.inner_text()  # 22 in 30 days
    # Today's burst is called out as an anomaly beside the charts.
    alerts = page.get_by_role("region", name="Anomalies")
    burst_day = (datetime.now(UTC) - timedelta(hours=2)).date().isoformat()
    spike = alerts.locator(".alert.high").filter(has_text=f"dora.deployments on {burst_day}")
    expect(spike).to_contain_text("unusually high")
    # Drawn, not just laid out: lines with points, bars with area.
    trend = page.get_by_role("figure", name="DORA trend by week")
    expect(
        trend.locator(".recharts-line-curve[d*='L'], .recharts-line-curve[d*='C']")
    ).not_to_have_count(0)
    tokens = page.get_by_role("figure", name="Tokens per day")
    expect(tokens.locator(".recharts-bar-rectangle path")).not_to_have_count(0)
    expect(page.get_by_role("figure", name="By model: tokens and latency")).to_contain_text("local")
    console.shot("dashboard")
    console.check()


def publish_scores(platform: Platform, tenant: str, run_id: str, scores: dict[str, float]) -> None:
    async def publish() -> None:
        nc = await nats.connect(platform.engines.urls()["nats"])
        js = nc.jetstream()
        for metric, score in scores.items():
            scored = EvaluationScored(
                tenant_id=tenant,
                evaluation_id="web-test",
                run_id=run_id,
                metric=metric,
                score=score,
                judge="heuristic",
            )
            await js.publish(s.TELEMETRY_EVALUATION_SCORED, scored.model_dump_json().encode())
        await nc.close()

    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, publish()).result()


def test_the_runs_page_shows_scores_and_a_runs_trace_as_a_waterfall(
    app: tuple[Page, Console], platform: Platform
) -> None:
    page, console = app
    page.get_by_role("link", name="Runs & traces").click()
    first = page.get_by_role("row").filter(has_text="Where do visitors park?")
    # Spans reach their files in batches: reload until the run is listed with its usage.
    for _ in range(30):
        expect(page.get_by_role("table")).to_be_visible()
        if first.count() and "success" in first.inner_text():
            break
        page.wait_for_timeout(1000)
        page.reload()
    expect(first.locator(".status")).to_have_text("success")
    # Evaluation scores of the run, as `agentbus eval` publishes them, show in its row.
    run_id = str(first.get_by_role("link").get_attribute("href")).rsplit("/", 1)[-1]
    me = page.request.get("/api/v1/users/me", headers=auth(page)).json()
    publish_scores(platform, me["tenant"]["id"], run_id, {"relevancy": 0.8, "faithfulness": 0.4})
    scores = first.get_by_role("list", name="Evaluation scores of the run")
    for _ in range(60):  # analytics stores in batches
        if scores.count():
            break
        page.wait_for_timeout(1000)
        page.reload()
    expect(scores.get_by_role("listitem")).to_have_text(["faithfulness 0.40", "relevancy 0.80"])
    expect(scores.locator("li.poor")).to_have_text("faithfulness 0.40")
    console.shot("runs")
    first.get_by_role("link").click()
    spans = page.get_by_role("list", name="Spans").get_by_role("button")
    for _ in range(30):
        if spans.count() > 3:
            break
        page.wait_for_timeout(1000)
        page.reload()
    expect(page.locator(".trace")).to_contain_text("gateway")
    expect(page.locator(".trace")).to_contain_text("orchestrator")
    spans.filter(has_text="POST").first.click()
    expect(page.get_by_role("region", name="Span details")).to_contain_text("gateway")
    console.shot("trace")
    console.check()


def test_api_keys_are_shown_once_listed_and_revoked(app: tuple[Page, Console]) -> None:
    page, console = app
    page.get_by_role("link", name="API keys").click()
    page.get_by_label("Name").fill("ci")
    page.get_by_role("button", name="Create key").click()
    secret = page.get_by_test_id("new-key").inner_text()
    assert secret.startswith("ab_")
    row = page.get_by_role("row").filter(has_text="ci")
    expect(row).to_contain_text(secret[:6])
    # The key works as a credential for the API, like any program would use it.
    me = page.request.get("/api/v1/users/me", headers={"x-api-key": secret})
    assert me.status == 200 and me.json()["auth"]["method"] == "api_key"
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Revoke ci").click()
    expect(row).to_have_count(0)
    assert page.request.get("/api/v1/users/me", headers={"x-api-key": secret}).status == 401
    console.check()


def test_phone_width_and_dark_theme(app: tuple[Page, Console]) -> None:
    page, console = app
    page.set_viewport_size({"width": 390, "height": 844})
    page.get_by_role("link", name="Chat").click()
    threads = page.get_by_role("complementary", name="Conversations")
    expect(threads.get_by_role("link", name="Where do visitors park?")).to_be_visible()
    page.get_by_role("button", name="Switch to dark theme").click()
    assert page.evaluate("() => document.documentElement.dataset.theme") == "dark"
    # Nothing wider than the screen: no sideways scrolling on a phone.
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 390
    console.shot("chat-phone-dark")
    page.get_by_role("button", name="Switch to light theme").click()
    page.set_viewport_size({"width": 1280, "height": 860})
    console.check()


def test_the_sample_organisation_in_tenant_dev_signed_in_with_its_key(
    platform: Platform, browser: Browser, shots: Path
) -> None:
    """What `make run` gives a newcomer: the sample in tenant dev, seen with var/dev-api-key."""
    loaded = subprocess.run(
        [sys.executable, "-m", "agentbus.runtime.cli", "demo"],
        env={**os.environ, "AGENTBUS_DATA_DIR": str(platform.data_dir)},
        capture_output=True,
        text=True,
        timeout=420,
    )
    assert loaded.returncode == 0, loaded.stdout + loaded.stderr
    key = (platform.data_dir / "dev-api-key").read_text().strip()
    context = browser.new_context(
        base_url=platform.gateway_url, viewport={"width": 1280, "height": 860}
    )
    context.set_default_timeout(WAIT_MS)
    page = context.new_page()
    console = Console(page, shots)
    try:
        page.goto("/")
        page.get_by_text("Sign in with an API key").click()
        page.get_by_label("API key").fill("ab_not-a-key")
        page.get_by_role("button", name="Use this key").click()
        expect(page.get_by_role("alert")).to_be_visible()  # a wrong key is refused, said so
        page.get_by_label("API key").fill(key)
        page.get_by_role("button", name="Use this key").click()
        expect(page.get_by_role("link", name="Chat")).to_have_attribute("aria-current", "page")
        # The sample's documents are listed, indexed.
        page.get_by_role("link", name="Documents").click()
        runbook = page.get_by_role("row").filter(has_text="Runbook: rolling back a deployment")
        expect(runbook.locator(".status")).to_have_text("indexed")
        # The dashboard shows the sample's DORA keys, the numbers analytics gives for them.
        dora = page.request.get("/api/v1/analytics/dora?period=30d", headers={"x-api-key": key})
        rows = [dict(zip(dora.json()["columns"], r, strict=True)) for r in dora.json()["rows"]]
        want = next(r for r in rows if r["service"] == "*")
        assert want["deployments"] > 0 and want["incidents"] > 0, want
        page.get_by_role("link", name="Dashboards").click()
        shown = {
            "Deployment frequency": f"{want['deployments_per_day']:.2f}",
            "Lead time for changes": f"{want['lead_time_hours_p50']:.1f}",
            "Change failure rate": f"{want['change_failure_rate'] * 100:.0f}",
            "Time to restore": f"{want['time_to_restore_hours_p50']:.1f}",
        }
        for label, value in shown.items():
            kpi = page.locator(".kpi").filter(has_text=label).locator("strong")
            expect(kpi).to_contain_text(value)
        trend = page.get_by_role("figure", name="DORA trend by week")
        expect(trend.locator(".recharts-line-curve")).not_to_have_count(0)
        console.shot("dashboard-sample")
        console.check("status of 401 (Unauthorized)")
    finally:
        context.close()


def test_screenshots_are_referenced_from_the_readme() -> None:
    readme = (ROOT / "README.md").read_text()
    for name in ("sign-in", "documents", "chat", "dashboard", "trace", "runs", "pipeline-settings"):
        assert f"docs/screenshots/{name}.png" in readme, name
