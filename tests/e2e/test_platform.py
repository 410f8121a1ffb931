"""The whole platform as real processes: readiness, discovery, failure and recovery."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import subprocess
import sys
import time

import httpx
import nats
import pytest

from agentbus.contracts import SERVICES
from agentbus.runtime.platform import Platform

pytestmark = pytest.mark.e2e

ENGINES = {"nats", "postgres", "graph", "clickhouse"}


def wait_for(platform: Platform, predicate, timeout: float = 60.0) -> dict:
    """Poll /readyz until `predicate(status, body)` holds; return the last body."""
    deadline = time.monotonic() + timeout
    status, body = 0, {}
    while time.monotonic() < deadline:
        try:
            status, body = platform.readiness()
        except httpx.HTTPError:
            status, body = 0, {}
        if predicate(status, body):
            return body
        time.sleep(0.3)
    raise AssertionError(f"condition not reached; last /readyz: {status} {body}")


def test_readyz_reports_every_engine_and_service(platform: Platform) -> None:
    status, body = platform.readiness()
    assert status == 200, body
    assert body["ready"] is True and body["not_ready"] == []
    assert set(body["engines"]) == ENGINES
    assert set(body["services"]) == set(SERVICES)
    assert all(c["ok"] for c in body["engines"].values())
    assert all(c["ok"] and c["version"] for c in body["services"].values())
    assert "pgvector" in body["engines"]["postgres"]["detail"]
    assert "chDB" in body["engines"]["clickhouse"]["detail"]


def test_healthz_is_liveness_only(platform: Platform) -> None:
    response = httpx.get(f"{platform.gateway_url}/healthz")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"


def test_agentbus_status_agrees_with_readyz(platform: Platform) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "agentbus.runtime.cli",
            "--data-dir",
            str(platform.data_dir),
            "status",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    _, readyz = platform.readiness()
    assert report["ready"] is True
    assert report["gateway_http"]["ok"] is True
    for group in ("engines", "services"):
        assert {k: v["ok"] for k, v in report[group].items()} == {
            k: v["ok"] for k, v in readyz[group].items()
        }
    text = subprocess.run(
        [
            sys.executable,
            "-m",
            "agentbus.runtime.cli",
            "--data-dir",
            str(platform.data_dir),
            "status",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert text.returncode == 0
    for name in (*ENGINES, *SERVICES):
        assert name in text.stdout


async def _micro(nats_url: str, subject: str, wait: float = 1.0) -> list[dict]:
    """Every reply to a request sent to all instances (the micro API answers from each)."""
    nc = await nats.connect(nats_url)
    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox)
    await nc.publish(subject, b"", reply=inbox)
    replies: list[dict] = []
    with contextlib.suppress(nats.errors.TimeoutError):
        while True:
            msg = await sub.next_msg(timeout=wait)
            replies.append(json.loads(msg.data))
    await sub.unsubscribe()
    await nc.close()
    return replies


def test_every_service_answers_the_nats_micro_api(platform: Platform) -> None:
    nats_url = platform.engines.urls()["nats"]
    pings = asyncio.run(_micro(nats_url, "$SRV.PING"))
    names = {p["name"] for p in pings}
    assert {f"agentbus-{s}" for s in SERVICES} <= names
    assert all(p["version"] == "0.1.0" for p in pings)
    (info,) = asyncio.run(_micro(nats_url, "$SRV.INFO.agentbus-retrieval"))
    assert info["name"] == "agentbus-retrieval"
    assert any(e["subject"] == "agentbus.v1.health.retrieval" for e in info["endpoints"])
    (stats,) = asyncio.run(_micro(nats_url, "$SRV.STATS.agentbus-analytics"))
    assert stats["name"] == "agentbus-analytics"


def test_killing_a_service_is_named_by_readyz_and_restart_recovers(platform: Platform) -> None:
    platform.stop_service("orchestrator", sig=signal.SIGKILL)
    body = wait_for(platform, lambda status, b: status == 503)
    assert body["not_ready"] == ["orchestrator"]
    assert body["services"]["orchestrator"]["ok"] is False
    platform.start_service("orchestrator")
    wait_for(platform, lambda status, b: status == 200)


def test_sigterm_stops_a_service_cleanly(platform: Platform) -> None:
    code = platform.stop_service("retrieval", sig=signal.SIGTERM)
    assert code == 0
    log = (platform.data_dir / "logs" / "retrieval.log").read_text()
    assert '"msg": "service stopped"' in log
    platform.start_service("retrieval")
    wait_for(platform, lambda status, b: status == 200)
