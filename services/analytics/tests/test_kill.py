"""Kill the analytics process mid-batch: after a restart nothing is lost and nothing doubled."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

from nats.aio.client import Client as NatsClient

from agentbus.contracts import DomainEvent
from agentbus.contracts import subjects as s
from agentbus.contracts.streams import ANALYTICS_DOMAIN_EVENTS

from .support import as_dicts, ask, eventually


def start(env: dict[str, str], log: Path, **settings: str) -> subprocess.Popen[bytes]:
    full = {**os.environ, **env, "AGENTBUS_LOG_FORMAT": "text", **settings}
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "agentbus.analytics"], env=full, stdout=out, stderr=out
        )


async def deployments(nc: NatsClient, tenant: str) -> int:
    rows = as_dicts(await ask(nc, tenant, "dora", since_hours=2))
    return next((int(str(r["deployments"])) for r in rows if r["service"] == "*"), 0)


async def test_sigkill_mid_batch_loses_nothing_and_counts_nothing_twice(
    analytics_env: dict[str, str], nc: NatsClient, tenant: str, tmp_path: Path
) -> None:
    total, batch = 1050, 200
    events = [
        DomainEvent(
            tenant_id=tenant,
            source="ci",
            type="deployment",
            data={"service": f"svc{i % 3}", "commits": [f"sha{i}"]},
        )
        for i in range(total)
    ]
    subject = s.domain_event(tenant, "ci", "deployment")
    js = nc.jetstream()
    log = tmp_path / "analytics.log"
    # Batches flush by size only (the interval is far away), so after the first flush the
    # process holds the next, partly filled batch, unacked, when it is killed.
    proc = start(
        analytics_env,
        log,
        AGENTBUS_ANALYTICS_BATCH_SIZE=str(batch),
        AGENTBUS_ANALYTICS_FLUSH_INTERVAL_S="600",
    )
    try:
        await eventually(lambda: _answers(nc, tenant), timeout=60, what="analytics to start")
        for event in events:
            await js.publish(subject, event.model_dump_json().encode())
        await eventually(lambda: _at_least(nc, tenant, batch), timeout=60, what="the first batch")
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    info = await js.consumer_info(ANALYTICS_DOMAIN_EVENTS.stream, ANALYTICS_DOMAIN_EVENTS.durable)
    assert info.num_ack_pending > 0  # the kill left delivered, unacked messages behind

    # A redelivery of an already stored event, as after an ack lost between insert and ack.
    for event in events[:100]:
        await js.publish(subject, event.model_dump_json().encode())

    proc = start(analytics_env, log, AGENTBUS_ANALYTICS_FLUSH_INTERVAL_S="0.2")
    try:
        await eventually(lambda: _answers(nc, tenant), timeout=60, what="analytics to restart")
        # Unacked messages come back after the consumer's ack wait (30 s).
        await eventually(
            lambda: _exactly(nc, tenant, total), timeout=120, what=f"{total} deployments"
        )

        async def drained() -> bool:
            info = await js.consumer_info(
                ANALYTICS_DOMAIN_EVENTS.stream, ANALYTICS_DOMAIN_EVENTS.durable
            )
            return not info.num_pending and not info.num_ack_pending

        await eventually(drained, timeout=60, what="the consumer to drain")
        assert await deployments(nc, tenant) == total
        rows = as_dicts(await ask(nc, tenant, "dora", since_hours=2))
        assert sorted((r["service"], r["deployments"]) for r in rows) == [
            ("*", total),
            ("svc0", 350),
            ("svc1", 350),
            ("svc2", 350),
        ]
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    # No error of ours (FastStream logs and retries a fetch timeout of its own, which is fine).
    text = log.read_text(errors="replace")
    assert "agentbus/analytics/" not in text and "insert failed" not in text


async def _answers(nc: NatsClient, tenant: str) -> bool:
    try:
        await ask(nc, tenant, "runs")
    except Exception:
        return False
    return True


async def _at_least(nc: NatsClient, tenant: str, n: int) -> bool:
    return await deployments(nc, tenant) >= n


async def _exactly(nc: NatsClient, tenant: str, n: int) -> bool:
    count = await deployments(nc, tenant)
    assert count <= n, f"{count} deployments stored for {n} published: counted twice"
    await asyncio.sleep(0)
    return count == n
