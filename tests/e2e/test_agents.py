"""Agent runs over the whole platform: durability across a killed orchestrator, replicas sharing
the queue, and the default assistant answering from documents with citations."""

from __future__ import annotations

import asyncio
import json
import signal
from collections import Counter
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import nats
import pytest
from nats.aio.client import Client as NatsClient
from nats.js.api import DeliverPolicy

from agentbus.contracts import (
    AnalyticsQuery,
    AnalyticsResult,
    DomainEvent,
    LlmUsage,
    RunEvent,
    RunRequested,
    new_id,
    utcnow,
)
from agentbus.contracts import subjects as s
from agentbus.orchestrator.app import build
from agentbus.orchestrator.settings import OrchestratorSettings
from agentbus.runtime.platform import Platform
from agentbus.runtime.testing import running

pytestmark = pytest.mark.e2e


@pytest.fixture
async def nc(platform: Platform) -> AsyncIterator[NatsClient]:
    client = await nats.connect(platform.engines.urls()["nats"])
    yield client
    await client.close()


async def submit(nc: NatsClient, **fields: Any) -> RunRequested:
    run = RunRequested(
        tenant_id=fields.pop("tenant_id", "acme"),
        run_id=fields.pop("run_id", new_id()),
        thread_id=fields.pop("thread_id", new_id()),
        **fields,
    )
    await nc.jetstream().publish(
        s.RUNS_SUBMIT, run.model_dump_json().encode(), headers={"Nats-Msg-Id": run.run_id}
    )
    return run


async def events(nc: NatsClient, run_id: str, timeout: float = 90) -> AsyncIterator[RunEvent]:
    sub = await nc.jetstream().subscribe(
        s.run_events(run_id), ordered_consumer=True, deliver_policy=DeliverPolicy.ALL
    )
    try:
        while True:
            event = RunEvent.model_validate_json((await sub.next_msg(timeout=timeout)).data)
            yield event
            if event.type == "end":
                return
    finally:
        await sub.unsubscribe()


async def test_killed_orchestrator_resumes_the_run_from_its_checkpoint(
    nc: NatsClient, platform: Platform
) -> None:
    run = await submit(nc, assistant_id="steps", input={"steps": 6, "delay": 0.4})
    async for event in events(nc, run.run_id):
        if event.type == "custom" and event.data["step"] == 2:
            platform.stop_service("orchestrator", sig=signal.SIGKILL)
            break
    platform.start_service("orchestrator")
    seen = [e async for e in events(nc, run.run_id, timeout=120)]
    assert seen[-1].status == "success"
    seqs = [e.seq for e in seen]
    assert seqs == list(range(len(seqs)))  # every sequence number exactly once, no gap
    steps = Counter(e.data["step"] for e in seen if e.type == "custom")
    # Step 1 was checkpointed before the kill and never ran again: the run was not executed
    # from the start. Step 2 was cut off before its checkpoint, so it ran again on resume.
    assert steps[1] == 1 and steps[2] <= 2
    assert set(steps) == {1, 2, 3, 4, 5, 6}
    assert [e.type for e in seen].count("metadata") == 1


async def test_two_replicas_share_a_burst_and_run_each_once(
    nc: NatsClient, platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in {
        **platform.engines.env(),
        "AGENTBUS_DATA_DIR": str(platform.data_dir),
        # Like the platform's own replica: the diagnostic `steps` assistant is served.
        "AGENTBUS_DIAGNOSTIC_ASSISTANTS": "true",
    }.items():
        monkeypatch.setenv(key, value)
    second = build(OrchestratorSettings())
    async with running(second):
        # One-second runs: more than one replica's concurrency limit is waiting at once, so the
        # burst cannot all land on whichever replica happens to pull first.
        runs = [
            await submit(nc, assistant_id="steps", input={"steps": 1, "delay": 1.0})
            for _ in range(50)
        ]

        async def outcome(run: RunRequested) -> list[RunEvent]:
            return [e async for e in events(nc, run.run_id)]

        results = await asyncio.gather(*(outcome(r) for r in runs))
    instances: Counter[str] = Counter()
    for run, seen in zip(runs, results, strict=True):
        types = [e.type for e in seen]
        assert types.count("metadata") == 1 and types.count("end") == 1, run.run_id
        assert types.count("node_start") == 1  # executed exactly once
        assert seen[-1].status == "success"
        instances[seen[0].data.get("instance", "")] += 1
    # Both replicas took part (each run's metadata names the instance that ran it).
    assert len(instances) == 2, instances


async def test_usage_of_streamed_calls_has_tokens(nc: NatsClient) -> None:
    js = nc.jetstream()
    sub = await js.subscribe(
        s.TELEMETRY_LLM_USAGE, ordered_consumer=True, deliver_policy=DeliverPolicy.NEW
    )
    run = await submit(
        nc,
        assistant_id="agent",
        input={"messages": [{"role": "user", "content": "who knows Rust?"}]},
    )
    seen = [e async for e in events(nc, run.run_id)]
    assert seen[-1].status == "success", seen[-1]
    usage: list[LlmUsage] = []
    while True:
        try:
            msg = await sub.next_msg(timeout=5)
        except TimeoutError:
            break
        item = LlmUsage.model_validate_json(msg.data)
        if item.run_id == run.run_id:
            usage.append(item)
    await sub.unsubscribe()
    model_events = [e for e in seen if e.type == "model_selection"]
    assert len(usage) == len(model_events) >= 1
    assert all(u.streamed and u.input_tokens > 0 and u.output_tokens > 0 for u in usage)


async def test_question_is_routed_to_documents_and_answered_with_citations(
    nc: NatsClient,
) -> None:
    from agentbus.contracts import DocumentIndexed, ThreadState, ThreadStateRequest
    from agentbus.runtime.clients.ingest import follow
    from agentbus.runtime.clients.ingest import submit as submit_document

    from .knowledge import PDF_PAGES, RUNBOOK, pdf_bytes

    indexed: dict[str, DocumentIndexed] = {}
    for name, data in (("backups.pdf", pdf_bytes(PDF_PAGES)), ("rollback.txt", RUNBOOK.encode())):
        sub = await submit_document(nc, "omega", data, filename=name, source=name)
        async for event in follow(nc, sub.document_id, sha256=sub.sha256, timeout=180):
            if isinstance(event, DocumentIndexed):
                indexed[name] = event
    assert set(indexed) == {"backups.pdf", "rollback.txt"}

    thread = new_id()
    question = "How do I restore a database from a snapshot?"
    run = await submit(
        nc,
        tenant_id="omega",
        thread_id=thread,
        assistant_id="agent",
        input={"messages": [{"role": "user", "content": question}]},
    )
    seen = [e async for e in events(nc, run.run_id)]
    types = [e.type for e in seen]
    routing = next(e for e in seen if e.type == "routing")
    assert routing.data["specialists"] == ["insights"]  # documents are its tools
    tool_start = next(e for e in seen if e.type == "tool_start")
    assert tool_start.data["tool"] == "search_documents"
    assert types.index("tool_start") < types.index("tool_end") < types.index("end")
    assert "token" in types and "model_selection" in types
    end = seen[-1]
    assert end.status == "success"
    answer = end.data["answer"]
    tokens = "".join(e.data["text"] for e in seen if e.type == "token")
    assert tokens.strip() == answer.strip()  # the answer was streamed as tokens
    assert "snapshot" in answer.lower() and "I found nothing" not in answer
    cited = {(c["document_id"], c["page"]) for c in end.data["citations"]}
    assert (indexed["backups.pdf"].document_id, 2) in cited
    # Each source once, with the number the answer cites it by, its title and a link.
    assert len(cited) == len(end.data["citations"])
    for c in end.data["citations"]:
        assert f"[{c['ref']}]" in answer and c["title"] and c["url"].endswith(f"#page={c['page']}")

    # A follow-up on the same thread sees the earlier turn (the checkpointer).
    follow_up = await submit(
        nc,
        tenant_id="omega",
        thread_id=thread,
        assistant_id="agent",
        input={"messages": [{"role": "user", "content": "How do I roll back a release?"}]},
    )
    later = [e async for e in events(nc, follow_up.run_id)]
    assert later[-1].status == "success"
    req = ThreadStateRequest(tenant_id="omega", thread_id=thread)
    state = ThreadState.model_validate_json(
        (await nc.request(s.THREADS_STATE, req.model_dump_json().encode(), timeout=10)).data
    )
    users = [m["content"] for m in state.current.values["messages"] if m["role"] == "user"]
    assert users == [question, "How do I roll back a release?"]


NEWCOMER = Path(__file__).resolve().parents[1] / "data" / "newcomer"


async def test_the_newcomer_example_cites_only_the_document_it_quotes(nc: NatsClient) -> None:
    """Issue 20: four small documents, the bee question, whole sentences, one source once."""
    from agentbus.contracts import DocumentIndexed, ThreadState, ThreadStateRequest
    from agentbus.runtime.clients.ingest import follow
    from agentbus.runtime.clients.ingest import submit as submit_document

    tenant = f"n{new_id()[:8]}"
    docs = await asyncio.to_thread(
        lambda: {p.name: p.read_bytes() for p in sorted(NEWCOMER.glob("*.md"))}
    )
    indexed: dict[str, DocumentIndexed] = {}
    for name, data in docs.items():
        sub = await submit_document(nc, tenant, data, filename=name)
        async for event in follow(nc, sub.document_id, sha256=sub.sha256, timeout=180):
            if isinstance(event, DocumentIndexed):
                indexed[name.removesuffix(".md")] = event
    assert len(indexed) == 4
    bees = indexed["overwintering-bees"].document_id

    run = await submit(
        nc,
        tenant_id=tenant,
        assistant_id="agent",
        input={
            "messages": [
                {"role": "user", "content": "how do bees keep warm during the cold season"}
            ]
        },
    )
    seen = [e async for e in events(nc, run.run_id)]
    end = seen[-1]
    assert end.status == "success", end
    answer = end.data["answer"]
    # Passages below the relevance bar were not offered to the model at all.
    req = ThreadStateRequest(tenant_id=tenant, thread_id=run.thread_id)
    state = ThreadState.model_validate_json(
        (await nc.request(s.THREADS_STATE, req.model_dump_json().encode(), timeout=10)).data
    )
    tool_messages = [m for m in state.current.values["messages"] if m["role"] == "tool"]
    offered = {h["document_id"] for m in tool_messages for h in json.loads(m["content"])["hits"]}
    assert offered == {bees}, offered
    sentences = [x for x in answer.split("] ") if x]
    assert 2 <= len(sentences) <= 3, answer
    for sentence in sentences:
        assert sentence[0].isupper() and "#" not in sentence and "\n" not in sentence, answer
        assert sentence.rstrip("]").endswith((". [1", "! [1", "? [1")), answer
    assert "Sources:" not in answer  # the list is the run's citations, not text
    assert end.data["citations"] == [
        {
            "ref": 1,
            "document_id": bees,
            "title": "Overwintering honey bee colonies",
            "page": None,
            "chunk_index": end.data["citations"][0]["chunk_index"],
            "chunks": end.data["citations"][0]["chunks"],
            "score": end.data["citations"][0]["score"],
            "url": f"/api/v1/documents/{bees}",
        }
    ]
    streamed = [e.data["citations"] for e in seen if e.type == "citations"]
    assert streamed == [end.data["citations"]]  # one citations event, after the answer


async def test_analytics_question_is_answered_from_domain_events(nc: NatsClient) -> None:
    # Another system reports deployments on the bus; the agent's analytics tool reads them back.
    tenant = f"t{new_id()[:8]}"
    js = nc.jetstream()
    for i in range(6):
        event = DomainEvent(
            tenant_id=tenant,
            source="ci",
            type="deployment",
            ts=utcnow() - timedelta(days=i),
            data={"service": "billing", "commits": [f"c{i}"], "status": "success"},
        )
        await js.publish(
            s.domain_event(tenant, "ci", "deployment"), event.model_dump_json().encode()
        )
    query = AnalyticsQuery(tenant_id=tenant, name="dora", params={"period": "30d"})
    for _ in range(240):  # until analytics has stored the batch (slow when the suite is busy)
        reply = await nc.request(s.ANALYTICS_QUERY, query.model_dump_json().encode(), timeout=30)
        result = AnalyticsResult.model_validate_json(reply.data)
        rows = [dict(zip(result.columns, row, strict=True)) for row in result.rows]
        if any(r["service"] == "billing" and r["deployments"] == 6 for r in rows):
            break
        await asyncio.sleep(0.5)
    else:
        raise AssertionError(f"analytics never stored the deployments: {result}")

    run = await submit(
        nc,
        tenant_id=tenant,
        assistant_id="agent",
        input={"messages": [{"role": "user", "content": "What is our deployment frequency?"}]},
    )
    seen = [e async for e in events(nc, run.run_id)]
    routing = next(e for e in seen if e.type == "routing")
    assert routing.data["specialists"] == ["delivery_metrics"]
    tool_end = next(e for e in seen if e.type == "tool_end")
    assert tool_end.data["tool"] == "query_metrics" and tool_end.data["ok"] is True, tool_end
    assert seen[-1].status == "success"
    answer = seen[-1].data["answer"]
    assert "billing" in answer and "could not be reached" not in answer, answer
