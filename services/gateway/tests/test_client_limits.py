"""Who a request comes from, and what every response says about itself (issue 13, points 6
and 11): X-Forwarded-For counts only from configured proxies, a login throttle per account
that no client address escapes, and security headers on every response."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator

import httpx
import nats
import pytest
from nats.js.errors import NoKeysError
from prometheus_client.parser import text_string_to_metric_families

from agentbus.contracts.streams import RATE_LIMITS
from agentbus.gateway.app import build
from agentbus.gateway.settings import GatewaySettings
from agentbus.runtime.testing import RAISED_RATE_LIMITS, running

PASSWORD = "Correct-Horse-9"


async def start(monkeypatch: pytest.MonkeyPatch, **env: str) -> AsyncIterator[httpx.AsyncClient]:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = GatewaySettings()
    base = f"http://127.0.0.1:{settings.gateway_port}"
    async with running(build(settings)), httpx.AsyncClient(base_url=base, timeout=30) as http:
        yield http


async def clear_of_the_hour_turn(margin_s: float = 60.0) -> None:
    """Rate-limit windows are fixed calendar windows: an hour's turns over at the top of the
    hour, and a count begun just before it starts again (CI met it at 09:00: the fourth login
    401, not 429). Within `margin_s` of the turn, wait until it has passed."""
    left = 3600 - time.time() % 3600
    if left < margin_s:
        await asyncio.sleep(left + 0.5)


async def forget_logins_by_address(nats_url: str) -> None:
    """The per-address login counts live in NATS KV for the whole session, and every test's
    client is 127.0.0.1: start this address's count from nothing."""
    nc = await nats.connect(nats_url)
    try:
        kv = await nc.jetstream().key_value(RATE_LIMITS.name)
        try:
            keys = await kv.keys()
        except NoKeysError:
            keys = []
        for key in keys:
            if key.startswith("login."):
                await kv.purge(key)
    finally:
        await nc.close()


@pytest.fixture
async def behind_other_proxy(
    service_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[httpx.AsyncClient]:
    """The only trusted proxy is not us: our X-Forwarded-For must be ignored. An hour's window,
    since a minute's can turn over mid-test (the fourth login 401, not 429: CI saw it)."""
    async for http in start(
        monkeypatch,
        AGENTBUS_FORWARDED_ALLOW_IPS="10.255.0.1",
        AGENTBUS_RATE_LIMITS=json.dumps({**RAISED_RATE_LIMITS, "login": "3/hour"}),
    ):
        await clear_of_the_hour_turn()
        await forget_logins_by_address(service_env["AGENTBUS_NATS_URL"])
        yield http


@pytest.fixture
async def behind_us(
    service_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[httpx.AsyncClient]:
    """We are the trusted proxy: X-Forwarded-For names the client. Each test logs in as a new
    account; its window is an hour, since a minute's window can turn over mid-test (401 not 429)."""
    async for http in start(
        monkeypatch,
        AGENTBUS_FORWARDED_ALLOW_IPS="127.0.0.1",
        AGENTBUS_RATE_LIMITS=json.dumps(
            {**RAISED_RATE_LIMITS, "login": "100/minute", "login_account": "3/hour"}
        ),
    ):
        await clear_of_the_hour_turn()
        yield http


def login(email: str, client_ip: str, password: str = "Wrong-Horse-1") -> dict[str, object]:
    return {
        "json": {"email": email, "password": password},
        "headers": {"X-Forwarded-For": client_ip},
    }


async def test_a_spoofed_forwarded_for_does_not_escape_the_login_limit(
    behind_other_proxy: httpx.AsyncClient,
) -> None:
    http = behind_other_proxy
    codes = [
        (
            await http.post("/api/v1/auth/login", **login(f"x{i}@example.com", f"10.1.0.{i}"))
        ).status_code  # type: ignore[arg-type]
        for i in range(4)
    ]
    assert codes == [401, 401, 401, 429], codes


async def test_one_account_is_throttled_from_any_address(behind_us: httpx.AsyncClient) -> None:
    http = behind_us
    email = f"victim-{uuid.uuid4().hex[:8]}@example.com"
    assert (
        await http.post("/api/v1/auth/register", json={"email": email, "password": PASSWORD})
    ).status_code == 201
    codes = [
        (await http.post("/api/v1/auth/login", **login(email, f"10.2.0.{i}"))).status_code  # type: ignore[arg-type]
        for i in range(4)
    ]
    assert codes == [401, 401, 401, 429], codes
    throttled = await http.post("/api/v1/auth/login", **login(email, "10.2.1.1", PASSWORD))  # type: ignore[arg-type]
    assert throttled.status_code == 429 and int(throttled.headers["Retry-After"]) >= 1
    # Other accounts are not affected.
    other = await http.post("/api/v1/auth/login", **login("nobody@example.com", "10.2.0.1"))  # type: ignore[arg-type]
    assert other.status_code == 401


async def test_every_response_carries_security_headers(behind_us: httpx.AsyncClient) -> None:
    http = behind_us
    for response in (
        await http.get("/healthz"),
        await http.get("/api/v1/threads"),  # 401
        await http.get("/api/v1/threads", headers={"X-Forwarded-Proto": "https"}),
    ):
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
        assert response.headers["X-Frame-Options"] == "DENY"
        assert response.headers["Referrer-Policy"] == "no-referrer"
    plain = await http.get("/healthz")
    assert "Strict-Transport-Security" not in plain.headers  # no TLS: no HSTS
    tls = await http.get("/healthz", headers={"X-Forwarded-Proto": "https"})
    assert tls.headers["Strict-Transport-Security"].startswith("max-age=")


async def test_requests_and_refusals_are_counted_for_the_dashboards(
    behind_us: httpx.AsyncClient,
) -> None:
    http = behind_us
    email = f"counted-{uuid.uuid4().hex[:8]}@example.com"
    body = {"email": email, "password": PASSWORD}
    assert (await http.post("/api/v1/auth/register", json=body)).status_code == 201
    codes = [
        (await http.post("/api/v1/auth/login", **login(email, f"10.3.0.{i}"))).status_code  # type: ignore[arg-type]
        for i in range(4)
    ]
    assert codes == [401, 401, 401, 429], codes
    assert (await http.get("/api/v1/threads/some-id")).status_code == 401
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families((await http.get("/metrics/")).text)
        for s in family.samples
    }

    def value(name: str, **labels: str) -> float:
        return samples.get((name, tuple(sorted(labels.items()))), 0.0)

    assert value("agentbus_rate_limited_requests_total", route="login_account") == 1
    login_route = {"method": "POST", "route": "/api/v1/auth/login"}
    assert value("agentbus_http_requests_total", status="4xx", **login_route) == 4
    assert value("agentbus_http_request_duration_seconds_count", **login_route) == 4
    # Routes are labelled by their template, never by the ids in the path.
    templated = [k for k in samples if ("route", "/api/v1/threads/some-id") in k[1]]
    assert not templated
    assert (
        value(
            "agentbus_http_requests_total",
            method="GET",
            route="/api/v1/threads/{thread_id}",
            status="4xx",
        )
        == 1
    )
