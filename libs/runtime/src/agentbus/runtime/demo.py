"""`agentbus demo`: load the sample organisation (samples/acme) into a running platform.

Everything goes over the bus exactly as an outside system would send it: the documents through the
ingest path of `agentbus ingest` (object store + `agentbus.v1.ingest.submit.<tenant>`), the domain
events on `agentbus.v1.events.<tenant>.<source>.<type>`. Loading is idempotent: documents have
ids derived from a fixed source name (the same bytes again are "unchanged"), events have fixed
ids (JetStream drops a repeated Nats-Msg-Id, analytics keeps one row per id, the graph merges on
it), and the quarter ends at the time of the first load, kept in `<data dir>/demo/<tenant>.json`,
so a later run regenerates the very same events.

`agentbus demo --remove` deletes the sample documents (over `agentbus.v1.ingest.delete`), the
sample's events in analytics (over `agentbus.v1.analytics.delete_events`, by their id prefix) and
the sample's facts in the graph.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from nats.aio.client import Client as NatsClient
from nats.errors import Error as NatsError
from neo4j.exceptions import DriverError, Neo4jError

from agentbus.contracts import (
    AnalyticsQuery,
    AnalyticsResult,
    DeleteDocument,
    DeleteEvents,
    DocumentDeleted,
    DocumentIndexed,
    EventsDeleted,
    GraphQuery,
    GraphResult,
    IngestFailed,
)
from agentbus.contracts import subjects as s
from agentbus.contracts.streams import (
    ANALYTICS_DOMAIN_EVENTS,
    INGEST_DOMAIN_EVENTS,
)

from .chassis import StartupError, connect_once
from .clients.ingest import derive_document_id, follow, submit
from .sample_events import ID_PREFIX, Organisation, SampleEvents, generate
from .settings import Settings

SOURCE_PREFIX = "agentbus-sample:acme/"  # the documents' source names (their ids derive from it)
DOC_SUFFIXES = {".md", ".html", ".pdf", ".txt"}

Echo = Callable[[str], None]


def default_samples_dir() -> Path:
    """samples/acme of this checkout (the CLI is installed editable from it), else of the cwd."""
    repo = Path(__file__).resolve().parents[5]
    for candidate in (repo / "samples" / "acme", Path.cwd() / "samples" / "acme"):
        if (candidate / "org.json").is_file():
            return candidate
    return repo / "samples" / "acme"


def sample_documents(samples: Path) -> list[Path]:
    docs = samples / "docs"
    return sorted(p for p in docs.iterdir() if p.is_file() and p.suffix.lower() in DOC_SUFFIXES)


def load_org(samples: Path) -> Organisation:
    path = samples / "org.json"
    try:
        return Organisation.from_json(json.loads(path.read_text()))
    except FileNotFoundError:
        raise SampleError(f"no sample organisation at {path} (give --samples DIR)") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise SampleError(f"{path} is not a valid sample organisation: {exc}") from None


class SampleError(Exception):
    """The sample cannot be loaded or removed; the message says why."""


def _anchor_path(settings: Settings, tenant: str) -> Path:
    return settings.data_dir / "demo" / f"{tenant}.json"


@dataclass(frozen=True)
class Anchor:
    """What keeps reloads identical: the end of the sample quarter (fixed at the first load) and
    a generation, bumped by --remove, that goes into the Nats-Msg-Id only. Event ids and times
    never change, so analytics (which keeps one row per id and cannot delete) never doubles; a
    new generation lets a reload after --remove through the bus's duplicate window."""

    end: datetime
    generation: int = 0
    removed_at: datetime | None = None


def read_anchor(settings: Settings, tenant: str) -> Anchor | None:
    path = _anchor_path(settings, tenant)
    if not path.is_file():
        return None
    raw = json.loads(path.read_text())
    removed = raw.get("removed_at")
    return Anchor(
        datetime.fromisoformat(raw["end"]),
        int(raw.get("generation", 0)),
        datetime.fromisoformat(removed) if removed else None,
    )


def write_anchor(settings: Settings, tenant: str, anchor: Anchor) -> None:
    path = _anchor_path(settings, tenant)
    path.parent.mkdir(parents=True, exist_ok=True)
    body = {
        "end": anchor.end.isoformat(),
        "generation": anchor.generation,
        "removed_at": anchor.removed_at.isoformat() if anchor.removed_at else None,
    }
    path.write_text(json.dumps(body) + "\n")


def quarter_anchor(settings: Settings, tenant: str) -> Anchor:
    anchor = read_anchor(settings, tenant)
    if anchor is None:
        anchor = Anchor(datetime.now(UTC).replace(minute=0, second=0, microsecond=0))
        write_anchor(settings, tenant, anchor)
    return anchor


# -- load -------------------------------------------------------------------------------------


async def _documents(
    nc: NatsClient, tenant: str, samples: Path, generation: int, echo: Echo, timeout: float
) -> int:
    failures = 0
    submitted = []
    for path in sample_documents(samples):
        data = await asyncio.to_thread(path.read_bytes)
        # A second early for clock skew: outcomes before the submission are not its outcome.
        at = datetime.now(UTC) - timedelta(seconds=1)
        sub = await submit(
            nc,
            tenant,
            data,
            filename=path.name,
            source=SOURCE_PREFIX + path.name,
            tags=["sample"],
            dedupe_suffix=f":demo{generation}",
        )
        submitted.append((path, sub, at))
    for path, sub, at in submitted:
        # A job the bus dropped as a repeat has only the outcome of the first one.
        since = None if sub.duplicate else at
        async for event in follow(
            nc, sub.document_id, sha256=sub.sha256, timeout=timeout, since=since
        ):
            if isinstance(event, DocumentIndexed):
                state = "unchanged" if event.unchanged else "indexed"
                echo(f"  document {path.name}: {state} ({event.chunks} chunks)")
            elif isinstance(event, IngestFailed):
                echo(f"  document {path.name}: FAILED - {event.reason}")
                failures += 1
    return failures


async def _publish(nc: NatsClient, sample: SampleEvents, generation: int, echo: Echo) -> int:
    js = nc.jetstream()
    total, fresh = len(sample.events), 0
    batch = 50
    for i in range(0, total, batch):
        chunk = sample.events[i : i + batch]
        acks = await asyncio.gather(
            *(
                js.publish(
                    s.domain_event(e.tenant_id, e.source, e.type),
                    e.model_dump_json().encode(),
                    headers={"Nats-Msg-Id": f"{e.id}:{generation}"},
                )
                for e in chunk
            )
        )
        fresh += sum(not ack.duplicate for ack in acks)
        done = min(i + batch, total)
        if done % 200 < batch or done == total:
            echo(f"  events published {done}/{total}")
    return fresh


async def _drained(nc: NatsClient, durable: str, what: str, echo: Echo, timeout: float) -> None:
    """Until the service's durable consumer on EVENTS has nothing pending or unacked."""
    js = nc.jetstream()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    shown = 0.0
    while True:
        info = await js.consumer_info("EVENTS", durable)
        left = (info.num_pending or 0) + (info.num_ack_pending or 0)
        if left == 0:
            return
        if loop.time() - shown >= 5.0:  # a line every few seconds, not a flood
            echo(f"  {what}: {left} events still to process")
            shown = loop.time()
        if loop.time() > deadline:
            raise TimeoutError(f"{what} did not process the sample events within {timeout:g}s")
        await asyncio.sleep(1.0)


async def _request(nc: NatsClient, subject: str, body: str, timeout: float) -> bytes:
    reply = await nc.request(subject, body.encode(), timeout=timeout)
    data: bytes = reply.data
    return data


async def dora(nc: NatsClient, tenant: str, since: datetime, until: datetime) -> dict[str, Any]:
    query = AnalyticsQuery(
        tenant_id=tenant,
        name="dora",
        params={"since": since.isoformat(), "until": until.isoformat()},
    )
    result = AnalyticsResult.model_validate_json(
        await _request(nc, s.ANALYTICS_QUERY, query.model_dump_json(), 30)
    )
    if result.error:
        raise SampleError(f"analytics: {result.error}")
    rows = [dict(zip(result.columns, row, strict=True)) for row in result.rows]
    return {str(r["service"]): r for r in rows}


async def people_with(nc: NatsClient, tenant: str, skill: str) -> list[str]:
    query = GraphQuery(tenant_id=tenant, name="people_by_skill", params={"skill": skill})
    result = GraphResult.model_validate_json(
        await _request(nc, s.GRAPH_QUERY, query.model_dump_json(), 30)
    )
    return [str(r["person"]) for r in result.rows]


async def load(
    settings: Settings, tenant: str, samples: Path, echo: Echo, timeout: float = 300.0
) -> int:
    org = load_org(samples)
    anchor = quarter_anchor(settings, tenant)
    end = anchor.end
    sample = generate(org, tenant, end)
    nc = await connect_once(settings)
    try:
        docs = sample_documents(samples)
        echo(f"agentbus demo: loading {org.name} into tenant {tenant!r}")
        echo(f"[1/3] {len(docs)} documents")
        failures = await _documents(nc, tenant, samples, anchor.generation, echo, timeout)
        echo(
            f"[2/3] {len(sample.events)} events: {len(org.people)} people in "
            f"{len(org.teams)} teams, {len(org.repositories)} repositories, {sample.commits} "
            f"commits, {sample.deployments} deployments, {sample.incidents} incidents "
            f"({org.days} days to {end:%Y-%m-%d %H:%M} UTC)"
        )
        fresh = await _publish(nc, sample, anchor.generation, echo)
        if fresh < len(sample.events):
            echo(f"  {len(sample.events) - fresh} already on the bus (not sent again)")
        echo("[3/3] waiting for analytics and the graph")
        await _drained(nc, ANALYTICS_DOMAIN_EVENTS.durable, "analytics", echo, timeout)
        await _drained(nc, INGEST_DOMAIN_EVENTS.durable, "graph", echo, timeout)
        services = {r.name for r in org.repositories}
        rows = await dora(nc, tenant, end - timedelta(days=org.days), end + timedelta(seconds=1))
        stored = sum(int(r["deployments"]) for name, r in rows.items() if name in services)
        echo(f"  analytics: {stored} deployments stored (the sample has {sample.deployments})")
        rust = await people_with(nc, tenant, "Rust")
        echo(f"  graph: Rust -> {', '.join(rust) or 'nobody yet'}")
    finally:
        await nc.close()
    if failures:
        echo(f"agentbus demo: {failures} documents failed")
        return 1
    echo(
        'agentbus demo: done. Try: agentbus ask "how do we roll back a bad release?", '
        'agentbus ask "who knows Rust?", agentbus ask "what is our deployment frequency?"'
    )
    return 0


# -- remove -----------------------------------------------------------------------------------

# Facts of the graph projection that came from sample events: edges carry the event id; team and
# ownership edges are recognised by the sample's own names.
_GRAPH_CLEANUP = (
    "MATCH (:Person {tenant_id: $t})-[u:USED]->(:Skill {tenant_id: $t}) "
    "WHERE u.event_id STARTS WITH $prefix DELETE u",
    "MATCH (:Person {tenant_id: $t})-[c:CONTRIBUTED]->(:Repository {tenant_id: $t}) "
    "WHERE c.event_id STARTS WITH $prefix DELETE c",
    "MATCH (p:Person {tenant_id: $t})-[m:MEMBER_OF]->(team:Team {tenant_id: $t}) "
    "WHERE p.key IN $people AND team.key IN $teams DELETE m",
    "MATCH (team:Team {tenant_id: $t})-[o:OWNS]->(r:Repository {tenant_id: $t}) "
    "WHERE team.key IN $teams AND r.key IN $repos DELETE o",
    # Nodes of the sample left with no edge at all (a user's own facts keep theirs).
    "MATCH (n {tenant_id: $t}) WHERE (n:Person AND n.key IN $people) OR "
    "(n:Team AND n.key IN $teams) OR (n:Repository AND n.key IN $repos) OR n:Skill "
    "OPTIONAL MATCH (n)-[r]-() WITH n, count(r) AS edges WHERE edges = 0 DELETE n",
)


def _key(value: str) -> str:
    return " ".join(value.strip().lower().split())


async def _remove_graph(settings: Settings, tenant: str, org: Organisation) -> None:
    # The shared driver and literal values: FalkorDB's Bolt listener needs both
    # (stores/knowledge_graph.py).
    from .stores.knowledge_graph import async_driver, inline_parameters

    driver = async_driver(
        settings.graph_url,
        settings.graph_user,
        settings.graph_password.get_secret_value(),
        falkordb=settings.graph_server == "falkordb",
    )
    params = {
        "t": tenant,
        "prefix": ID_PREFIX,
        "people": [_key(p.name) for p in org.people],
        "teams": [_key(t) for t in org.teams],
        "repos": [_key(r.name) for r in org.repositories],
    }
    try:
        async with driver.session() as session:
            for cypher in _GRAPH_CLEANUP:
                await (await session.run(inline_parameters(cypher, params))).consume()
    finally:
        await driver.close()


async def remove(settings: Settings, tenant: str, samples: Path, echo: Echo) -> int:
    org = load_org(samples)
    nc = await connect_once(settings)
    try:
        echo(f"agentbus demo: removing {org.name} from tenant {tenant!r}")
        for path in sample_documents(samples):
            doc = derive_document_id(tenant, SOURCE_PREFIX + path.name)
            req = DeleteDocument(tenant_id=tenant, document_id=doc)
            raw = await _request(nc, s.INGEST_DELETE, req.model_dump_json(), 60)
            try:
                done = DocumentDeleted.model_validate_json(raw)
            except ValueError:
                raise SampleError(f"ingest refused to delete {path.name}: {raw!r}") from None
            state = f"deleted ({done.chunks_removed} chunks)" if done.found else "not loaded"
            echo(f"  document {path.name}: {state}")
        events = DeleteEvents(tenant_id=tenant, id_prefix=ID_PREFIX)
        raw = await _request(nc, s.ANALYTICS_DELETE_EVENTS, events.model_dump_json(), 120)
        try:
            gone = EventsDeleted.model_validate_json(raw)
        except ValueError:
            raise SampleError(f"analytics refused to delete the sample's events: {raw!r}") from None
        if gone.error is not None:
            raise SampleError(f"analytics could not delete the sample's events: {gone.error}")
        echo(f"  analytics: {gone.deleted} sample events deleted")
    finally:
        await nc.close()
    await _remove_graph(settings, tenant, org)
    echo("  graph: the sample's people, teams, repositories and skills removed")
    anchor = read_anchor(settings, tenant)
    if anchor is not None:  # kept: a reload regenerates the same events (see Anchor)
        removed = Anchor(anchor.end, anchor.generation + 1, datetime.now(UTC))
        write_anchor(settings, tenant, removed)
    return 0


# -- command ----------------------------------------------------------------------------------


def run(args: argparse.Namespace, settings: Settings) -> int:
    samples = args.samples or default_samples_dir()

    def echo(line: str) -> None:
        print(line, flush=True)

    try:
        if args.remove:
            return asyncio.run(remove(settings, args.tenant, samples, echo))
        return asyncio.run(load(settings, args.tenant, samples, echo, args.timeout))
    except (SampleError, StartupError, TimeoutError) as exc:
        print(f"agentbus: {exc}", file=sys.stderr)
        return 2
    except (NatsError, Neo4jError, DriverError) as exc:  # a service or engine not answering
        print(f"agentbus: demo failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
