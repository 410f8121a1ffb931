"""Ingest and retrieval over the real platform: NATS, PostgreSQL + pgvector, Bolt graph."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator

import asyncpg
import httpx
import nats
import pytest
from nats.aio.client import Client as NatsClient
from nats.js.api import DeliverPolicy

from agentbus.contracts import (
    DeleteDocument,
    DocumentDeleted,
    DocumentIndexed,
    DomainEvent,
    ErrorReply,
    GraphQuery,
    GraphResult,
    IngestFailed,
    IngestProgress,
    SearchRequest,
    SearchResult,
)
from agentbus.contracts import subjects as s
from agentbus.runtime.clients.ingest import follow, submit
from agentbus.runtime.platform import Platform

from .knowledge import LABELLED, corpus, pdf_bytes

pytestmark = pytest.mark.e2e


@pytest.fixture
async def nc(platform: Platform) -> AsyncIterator[NatsClient]:
    client = await nats.connect(platform.engines.urls()["nats"])
    yield client
    await client.close()


async def ingest(
    nc: NatsClient, tenant: str, name: str, data: bytes
) -> DocumentIndexed | IngestFailed:
    sub = await submit(nc, tenant, data, filename=name, source=name)
    outcome: DocumentIndexed | IngestFailed | None = None
    async for event in follow(nc, sub.document_id, sha256=sub.sha256, timeout=180):
        if isinstance(event, DocumentIndexed | IngestFailed):
            outcome = event
    assert outcome is not None
    return outcome


async def search(
    nc: NatsClient, tenant: str, query: str, mode: str = "hybrid", k: int = 5
) -> SearchResult:
    req = SearchRequest(tenant_id=tenant, query=query, mode=mode, top_k=k)  # type: ignore[arg-type]
    reply = await nc.request(s.RETRIEVAL_SEARCH, req.model_dump_json().encode(), timeout=30)
    return SearchResult.model_validate_json(reply.data)


async def graph(nc: NatsClient, tenant: str, name: str, **params: str) -> GraphResult:
    req = GraphQuery(tenant_id=tenant, name=name, params=params)  # type: ignore[arg-type]
    reply = await nc.request(s.GRAPH_QUERY, req.model_dump_json().encode(), timeout=30)
    return GraphResult.model_validate_json(reply.data)


@pytest.fixture(scope="module")
def acme_corpus(platform: Platform) -> dict[str, DocumentIndexed]:
    async def run() -> dict[str, DocumentIndexed]:
        client = await nats.connect(platform.engines.urls()["nats"])
        try:
            out = {}
            for name, data in corpus().items():
                result = await ingest(client, "acme", name, data)
                assert isinstance(result, DocumentIndexed), result
                out[name] = result
            return out
        finally:
            await client.close()

    return asyncio.run(run())


async def test_each_document_is_found_by_a_paraphrase_with_its_page(
    nc: NatsClient, acme_corpus: dict[str, DocumentIndexed]
) -> None:
    assert acme_corpus["backups.pdf"].pages == 3
    ids = {doc.document_id: name for name, doc in acme_corpus.items()}
    for question, (name, page) in LABELLED.items():
        result = await search(nc, "acme", question)
        top = [(ids.get(h.document_id), h.page) for h in result.hits[:5]]
        assert (name, page) in top, (question, top)
        assert result.hits[0].title  # every hit names its document


async def test_hybrid_is_at_least_as_good_as_each_method(
    nc: NatsClient, acme_corpus: dict[str, DocumentIndexed]
) -> None:
    ids = {doc.document_id: name for name, doc in acme_corpus.items()}

    async def mrr(mode: str) -> float:
        total = 0.0
        for question, (name, page) in LABELLED.items():
            result = await search(nc, "acme", question, mode=mode, k=10)
            ranks = [
                i
                for i, h in enumerate(result.hits, 1)
                if (ids.get(h.document_id), h.page) == (name, page)
            ]
            total += 1.0 / ranks[0] if ranks else 0.0
        return total / len(LABELLED)

    hybrid, vector, keyword = await mrr("hybrid"), await mrr("vector"), await mrr("keyword")
    print(f"MRR hybrid={hybrid:.3f} vector={vector:.3f} keyword={keyword:.3f}")
    assert hybrid >= vector and hybrid >= keyword


async def test_same_bytes_twice_is_one_unchanged_document(
    nc: NatsClient, acme_corpus: dict[str, DocumentIndexed], platform: Platform
) -> None:
    data = corpus()["rollback.txt"]
    again = await submit(nc, "acme", data, filename="rollback.txt", source="rollback.txt")
    assert again.duplicate  # the submission itself is deduplicated by content hash
    # Past the dedupe window the worker itself answers "unchanged": simulate with a new message id.
    from agentbus.contracts import IngestRequested

    first = acme_corpus["rollback.txt"]
    job = IngestRequested(
        tenant_id="acme",
        document_id=first.document_id,
        object_name=f"acme/{first.document_id}/{first.sha256}",
        filename="rollback.txt",
        content_type="text/plain",
        size=len(data),
        sha256=first.sha256,
        source="rollback.txt",
    )
    js = nc.jetstream()
    watch = await js.subscribe(
        s.ingest_progress(first.document_id),
        stream="INGEST_EVENTS",
        ordered_consumer=True,
        deliver_policy=DeliverPolicy.NEW,
    )
    await js.publish(
        s.ingest_submit("acme"),
        job.model_dump_json().encode(),
        headers={"Nats-Msg-Id": "resubmit-after-window"},
    )
    outcome = None
    while outcome is None:
        msg = await watch.next_msg(timeout=60)
        if b'"unchanged"' in msg.data and b'"chunks"' in msg.data:
            outcome = DocumentIndexed.model_validate_json(msg.data)
    await watch.unsubscribe()
    assert outcome.unchanged
    assert outcome is not None and outcome.chunks == first.chunks
    conn = await asyncpg.connect(platform.engines.urls()["postgres"])
    try:
        docs = await conn.fetchval(
            "SELECT count(*) FROM documents WHERE tenant_id = 'acme' AND document_id = $1",
            first.document_id,
        )
        chunks = await conn.fetchval(
            "SELECT count(*) FROM chunks WHERE tenant_id = 'acme' AND document_id = $1",
            first.document_id,
        )
    finally:
        await conn.close()
    assert (docs, chunks) == (1, first.chunks)


async def test_tenant_b_never_sees_tenant_a(
    nc: NatsClient, acme_corpus: dict[str, DocumentIndexed]
) -> None:
    beta = await ingest(nc, "beta", "rollback.txt", b"Beta rolls back releases by calling Zed.")
    assert isinstance(beta, DocumentIndexed)
    for question in LABELLED:
        for mode in ("hybrid", "vector", "keyword"):
            result = await search(nc, "beta", question, mode=mode, k=20)
            assert {h.document_id for h in result.hits} <= {beta.document_id}
    result = await search(nc, "acme", "Zed", mode="keyword")
    assert beta.document_id not in {h.document_id for h in result.hits}
    mentions = await graph(nc, "beta", "documents_mentioning", entity="PagerDuty")
    assert mentions.rows == []
    acme_mentions = await graph(nc, "acme", "documents_mentioning", entity="PagerDuty")
    assert [r["document_id"] for r in acme_mentions.rows] == [acme_corpus["oncall.md"].document_id]


async def test_delete_removes_chunks_graph_links_and_bytes(nc: NatsClient) -> None:
    text = b"Gamma pages the SRE rotation through PagerDuty before any failover."
    doc = await ingest(nc, "gamma", "failover.md", text)
    keep = await ingest(nc, "delta", "failover.md", text)
    assert isinstance(doc, DocumentIndexed) and isinstance(keep, DocumentIndexed)
    assert (await graph(nc, "gamma", "documents_mentioning", entity="PagerDuty")).rows

    async def delete(tenant: str, document_id: str) -> DocumentDeleted:
        req = DeleteDocument(tenant_id=tenant, document_id=document_id)
        reply = await nc.request(s.INGEST_DELETE, req.model_dump_json().encode(), timeout=30)
        return DocumentDeleted.model_validate_json(reply.data)

    # Another tenant cannot delete it, even knowing the id.
    assert not (await delete("delta", doc.document_id)).found
    assert (await search(nc, "gamma", "PagerDuty failover", mode="keyword")).hits
    gone = await delete("gamma", doc.document_id)
    assert gone.found and gone.chunks_removed == doc.chunks
    assert (await search(nc, "gamma", "PagerDuty failover", mode="keyword")).hits == []
    assert (await graph(nc, "gamma", "documents_mentioning", entity="PagerDuty")).rows == []
    store = await nc.jetstream().object_store("documents")
    names = {info.name for info in await store.list(ignore_deletes=True)}
    assert not any(name.startswith(f"gamma/{doc.document_id}/") for name in names)
    # Idempotent, and the other tenant's copy is untouched.
    assert not (await delete("gamma", doc.document_id)).found
    assert (await search(nc, "delta", "PagerDuty failover", mode="keyword")).hits
    bad = await nc.request(s.INGEST_DELETE, b'{"tenant_id": "gamma"}', timeout=30)
    assert ErrorReply.model_validate_json(bad.data).reason


async def test_people_who_know_rust(nc: NatsClient) -> None:
    js = nc.jetstream()
    now = time.time()
    commits = [
        ("Alice Smith", "payments-api", ["src/lib.rs", "src/charge.rs"], now - 3600),
        ("Alice Smith", "payments-api", ["src/refund.rs"], now - 7200),
        ("Bob Jones", "web", ["app/views.py"], now - 3600),
        ("Carol White", "legacy", ["old/main.rs"], now - 400 * 86400),
    ]
    for i, (author, repo, files, ts) in enumerate(commits):
        from datetime import UTC, datetime

        event = DomainEvent(
            tenant_id="gamma",
            source="git",
            type="commit",
            ts=datetime.fromtimestamp(ts, UTC),
            data={"author": {"name": author}, "repository": repo, "files": files},
            id=f"commit-{i}",
        )
        await js.publish(
            s.domain_event("gamma", "git", "commit"),
            event.model_dump_json().encode(),
            headers={"Nats-Msg-Id": event.id},
        )
    deadline = time.monotonic() + 60
    rows: list[dict] = []
    while time.monotonic() < deadline:
        rows = (await graph(nc, "gamma", "people_by_skill", skill="Rust")).rows
        if len(rows) == 2:
            break
        await asyncio.sleep(0.5)
    assert [r["person"] for r in rows] == ["Alice Smith", "Carol White"]
    assert rows[0]["events"] == 2
    owners = await graph(nc, "gamma", "owners_of", repository="payments-api")
    assert owners.rows and owners.rows[0]["person"] == "Alice Smith"
    other = await graph(nc, "acme", "people_by_skill", skill="Rust")
    assert other.rows == []


async def test_bad_documents_fail_with_a_reason_and_the_worker_keeps_going(
    nc: NatsClient, platform: Platform
) -> None:
    from fpdf import FPDF

    enc = FPDF()
    enc.set_encryption(owner_password="owner", user_password="secret")
    enc.add_page()
    enc.set_font("Helvetica", size=12)
    enc.cell(0, 10, "secret")
    cases = {
        "empty.txt": (b"", "empty"),
        "garbage.txt": (bytes(range(256)) * 40, "binary"),
        "picture.png": (b"\x89PNG\r\n\x1a\n" + b"\x00" * 100, "unsupported"),
        "latin1.txt": ("caf\xe9 cr\xe8me".encode("latin-1"), "UTF-8"),
        "broken.pdf": (pdf_bytes(["hello"])[:200], "PDF"),
        "locked.pdf": (bytes(enc.output()), "encrypted"),
        "huge.txt": (b"word " * 420_000, "limit"),
    }
    for name, (data, reason) in cases.items():
        outcome = await ingest(nc, "acme", name, data)
        assert isinstance(outcome, IngestFailed), (name, outcome)
        assert reason.lower() in outcome.reason.lower(), (name, outcome.reason)
    # A message that is not an IngestRequested at all: rejected, counted, and the worker goes on.
    await nc.jetstream().publish(
        s.ingest_submit("acme"), b"{not json", headers={"Nats-Msg-Id": "garbage-1"}
    )
    good = await ingest(nc, "acme", "after-garbage.txt", b"The worker keeps serving after garbage.")
    assert isinstance(good, DocumentIndexed)
    async with httpx.AsyncClient() as http:
        metrics = (await http.get(f"http://127.0.0.1:{platform.ops_ports['ingest']}/metrics")).text
    assert (
        "agentbus_rejected_messages_total{"
        'reason="invalid_json",service="ingest",subject="agentbus.v1.ingest.submit.acme"} 1.0'
    ) in metrics


async def test_killed_worker_resumes_without_duplicate_chunks(
    nc: NatsClient, platform: Platform
) -> None:
    text = "\n\n".join(
        f"Section {i}. The service number {i} handles requests for region {i % 7} and keeps "
        f"its state in shard {i % 13}. Operators restart it with the runbook step {i}."
        for i in range(400)
    ).encode()
    sub = await submit(nc, "acme", text, filename="long.txt", source="long.txt")
    killed_at = None
    async for event in follow(nc, sub.document_id, sha256=sub.sha256, timeout=180):
        if isinstance(event, IngestProgress) and event.stage == "embedded" and event.done >= 8:
            assert event.done < event.total, "document finished before it could be interrupted"
            killed_at = event.done
            platform.stop_service("ingest", sig=signal.SIGKILL)
            break
    assert killed_at is not None
    platform.start_service("ingest")
    outcome = None
    resumed_from = None
    async for event in follow(nc, sub.document_id, sha256=sub.sha256, timeout=180):
        if (
            isinstance(event, IngestProgress)
            and event.stage == "embedded"
            and resumed_from is None
            and event.done > 0
        ):
            resumed_from = event.done
        if isinstance(event, DocumentIndexed | IngestFailed):
            outcome = event
    assert isinstance(outcome, DocumentIndexed), outcome
    conn = await asyncpg.connect(platform.engines.urls()["postgres"])
    try:
        rows = await conn.fetch(
            "SELECT chunk_index FROM chunks WHERE tenant_id = 'acme' AND document_id = $1",
            sub.document_id,
        )
    finally:
        await conn.close()
    indexes = sorted(r["chunk_index"] for r in rows)
    assert indexes == list(range(outcome.chunks))  # every chunk once, none missing
    log = (platform.data_dir / "logs" / "ingest.log").read_text()
    assert "resuming embedding" in log  # the restarted worker did not start over


def test_cli_ingest_and_search(platform: Platform, tmp_path) -> None:
    doc = tmp_path / "cli-guide.md"
    doc.write_text(
        "# Coffee machine\n\nDescale the espresso machine every Friday with citric acid.\n"
    )
    env = {**os.environ, "AGENTBUS_DATA_DIR": str(platform.data_dir)}
    cli = [sys.executable, "-m", "agentbus.runtime.cli"]
    up = subprocess.run(
        [*cli, "ingest", str(doc), "--tenant", "delta", "--wait"],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert up.returncode == 0, up.stdout + up.stderr
    assert "indexed" in up.stdout
    found = subprocess.run(
        [*cli, "search", "cleaning the coffee maker", "--tenant", "delta", "-k", "3"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert found.returncode == 0, found.stderr
    assert "Coffee machine" in found.stdout
    as_json = subprocess.run(
        [*cli, "search", "espresso", "--tenant", "delta", "--json", "--mode", "keyword"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert json.loads(as_json.stdout)["hits"][0]["title"] == "Coffee machine"
