"""The production bus topology on one machine: three nats-server processes forming a JetStream
cluster, every stream and bucket on three replicas, the whole platform connected to all three.
Kill the server leading the run streams mid-load (streamed runs through the gateway, domain
events, documents): every accepted run, event and document arrives once, the clients' streams
go on, and the time to a new leader is reported. Then the same load with PostgreSQL killed
instead: every pool comes back and nothing is lost or doubled.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest
from langgraph_sdk import get_client
from nats.aio.client import Client as NatsClient
from nats.errors import TimeoutError as NatsTimeout
from nats.js.errors import APIError

from agentbus.contracts import AnalyticsQuery, AnalyticsResult, DomainEvent, new_id, utcnow
from agentbus.contracts import subjects as s
from agentbus.runtime.engines import NatsCluster, ProcessEngine, free_port
from agentbus.runtime.platform import Platform

from ..e2e.knowledge import pdf_bytes
from ..e2e.support import steps_run

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def clustered(session_root: Path) -> Iterator[Platform]:
    root = session_root / "cluster"
    plat = Platform(root / "var", gateway_port=free_port(), nats_nodes=3)
    plat.start(timeout=240)
    try:
        yield plat
    finally:
        plat.stop()


@pytest.fixture
async def nc(clustered: Platform) -> AsyncIterator[NatsClient]:
    client = await nats.connect(servers=clustered.engines.nats.url.split(","))
    yield client
    await client.close()


def key(plat: Platform) -> str:
    return (plat.data_dir / "dev-api-key").read_text().strip()


async def leader(nc: NatsClient, stream: str) -> str | None:
    try:
        info = await nc.jetstream().stream_info(stream)
    except (APIError, NatsTimeout):
        return None
    return info.cluster.leader if info.cluster else None


async def publish_until_acked(nc: NatsClient, subject: str, body: bytes, msg_id: str) -> None:
    """What a well-behaved outside system does: retry with the same Nats-Msg-Id until JetStream
    acknowledges (a retried duplicate is dropped by the stream's dedupe window)."""
    js = nc.jetstream()
    for _ in range(120):
        try:
            await js.publish(subject, body, headers={"Nats-Msg-Id": msg_id}, timeout=2)
            return
        except (APIError, NatsTimeout, nats.errors.NoRespondersError):
            await asyncio.sleep(0.25)
    raise AssertionError(f"event {msg_id} never acknowledged")


@dataclass
class Load:
    """Work in flight on the cluster: streamed runs, domain events and a document."""

    tenant: str
    sdk: Any
    http: httpx.AsyncClient
    runs: list[asyncio.Task[list[Any]]]
    events: asyncio.Task[None]
    document: str


async def start_load(clustered: Platform, nc: NatsClient) -> Load:
    """Six streamed 4-step runs through the SDK, 150 domain events published as an outside
    system does, and a PDF uploaded: all under way when this returns."""
    sdk = get_client(url=clustered.gateway_url, api_key=key(clustered), timeout=240)
    http = httpx.AsyncClient(
        base_url=clustered.gateway_url, headers={"x-api-key": key(clustered)}, timeout=240
    )
    tenant = f"c{new_id()[:8]}"

    async def send_events(count: int) -> None:
        for i in range(count):
            event = DomainEvent(
                id=f"{tenant}-{i}",
                tenant_id=tenant,
                source="ci",
                type="deployment",
                ts=utcnow(),
                data={"service": "billing", "commits": [f"c{i}"], "status": "success"},
            )
            await publish_until_acked(
                nc,
                s.domain_event(tenant, "ci", "deployment"),
                event.model_dump_json().encode(),
                event.id,
            )

    runs = [asyncio.create_task(steps_run(sdk, 4, 0.5)) for _ in range(6)]
    events = asyncio.create_task(send_events(150))
    upload = await http.post(
        "/api/v1/documents",
        files={"file": (f"{tenant}.pdf", pdf_bytes(_PAGES), "application/pdf")},
        data={"title": "Cluster handbook"},
    )
    assert upload.status_code == 202, upload.text
    return Load(tenant, sdk, http, runs, events, upload.json()["document_id"])


async def nothing_lost_or_doubled(load: Load, nc: NatsClient) -> None:
    """Every run's steps once, every event counted once by analytics, the document indexed."""
    try:
        outcomes = await asyncio.wait_for(asyncio.gather(*load.runs), 240)
        await asyncio.wait_for(load.events, 240)
        for parts in outcomes:
            steps = [p.data["step"] for p in parts if p.event == "custom"]
            assert sorted(set(steps)) == [1, 2, 3, 4], steps
        # Every event stored once: the stream kept each id once, analytics counted each once.
        query = AnalyticsQuery(tenant_id=load.tenant, name="dora", params={"period": "30d"})
        deployments = 0
        for _ in range(120):
            reply = await nc.request(s.ANALYTICS_QUERY, query.model_dump_json().encode(), 30)
            result = AnalyticsResult.model_validate_json(reply.data)
            rows = [dict(zip(result.columns, row, strict=True)) for row in result.rows]
            # One row per service plus `*` for all: billing's row.
            deployments = sum(int(r["deployments"]) for r in rows if r["service"] == "billing")
            if deployments >= 150:
                break
            await asyncio.sleep(0.5)
        assert deployments == 150
        status = ""
        for _ in range(240):
            doc = (await load.http.get(f"/api/v1/documents/{load.document}")).json()
            status = doc.get("status", "")
            if status in {"indexed", "failed"}:
                break
            await asyncio.sleep(0.5)
        assert status == "indexed"
    finally:
        for task in (*load.runs, load.events):
            task.cancel()
        await load.http.aclose()
        await load.sdk.aclose()


async def test_losing_the_stream_leader_loses_and_doubles_nothing(
    clustered: Platform, nc: NatsClient
) -> None:
    cluster = clustered.engines.nats
    assert isinstance(cluster, NatsCluster)
    js = nc.jetstream()
    for stream in ("RUNS", "RUN_EVENTS", "EVENTS", "INGEST"):
        assert (await js.stream_info(stream)).config.num_replicas == 3, stream

    load = await start_load(clustered, nc)
    await asyncio.sleep(1.0)
    # Kill the server leading the run events, and keep it down while the others carry on.
    victim_name = await leader(nc, "RUN_EVENTS")
    assert victim_name is not None
    victim = cluster.node_named(victim_name)
    supervisor = clustered.supervisor
    assert supervisor is not None
    supervisor.pause(f"nats/{victim.data_dir.name}")
    killed_at = time.monotonic()
    os.kill(victim.pids()[0], signal.SIGKILL)
    new_leader = None
    while time.monotonic() - killed_at < 60:
        new_leader = await leader(nc, "RUN_EVENTS")
        if new_leader not in (None, victim_name):
            break
        await asyncio.sleep(0.1)
    failover_s = time.monotonic() - killed_at
    assert new_leader not in (None, victim_name), new_leader
    print(f"\nRUN_EVENTS: new leader {new_leader} {failover_s:.2f}s after {victim_name} died")
    await nothing_lost_or_doubled(load, nc)
    # The lost server comes back and catches up; nothing was waiting on it.
    victim.restart(timeout=60)
    supervisor.resume(f"nats/{victim.data_dir.name}")


async def test_postgres_killed_under_cluster_load_loses_and_doubles_nothing(
    clustered: Platform, nc: NatsClient
) -> None:
    """PostgreSQL (checkpoints, threads, chunks) `kill -9`ed while the same load runs on the
    clustered bus: the supervisor restarts it on the same port, no service's pool stays dead,
    and every run, event and document still arrives once."""
    postgres = {e.name: e for e in clustered.engines.engines}["postgres"]
    assert isinstance(postgres, ProcessEngine)
    restarts = postgres.restarts
    load = await start_load(clustered, nc)
    await asyncio.sleep(1.0)
    killed_at = time.monotonic()
    os.kill(postgres.pids()[0], signal.SIGKILL)
    while time.monotonic() - killed_at < 120:
        if postgres.restarts != restarts:
            with contextlib.suppress(httpx.HTTPError, ValueError):
                if (await asyncio.to_thread(clustered.readiness, 5))[0] == 200:
                    break
        await asyncio.sleep(0.1)
    recovered_s = time.monotonic() - killed_at
    assert postgres.restarts == restarts + 1
    print(f"\npostgres: killed under cluster load, platform ready after {recovered_s:.1f}s")
    await nothing_lost_or_doubled(load, nc)
    # Work after the restart finds every pool alive: a new run and a chat with a citation.
    async with httpx.AsyncClient(
        base_url=clustered.gateway_url, headers={"x-api-key": key(clustered)}, timeout=120
    ) as http:
        chat = await http.post(
            "/api/v1/chat", json={"message": "How many copies does the cluster keep?"}
        )
        assert chat.status_code == 200 and chat.json()["status"] == "success", chat.text
        assert chat.json()["citations"], chat.json()


_PAGES = [
    "Cluster handbook. The cluster keeps three copies of every stream.",
    "Failover. When a server dies, the others elect a new leader within seconds.",
]


def test_cluster_seats_route_to_each_other(tmp_path: Path) -> None:
    cluster = NatsCluster(tmp_path / "nats", nodes=3)
    ports = [n.seat.cluster_port for n in cluster.nodes if n.seat]
    for node in cluster.nodes:
        assert node.seat is not None
        assert sorted((*node.seat.peer_ports, node.seat.cluster_port)) == sorted(ports)
    assert len(cluster.url.split(",")) == 3
