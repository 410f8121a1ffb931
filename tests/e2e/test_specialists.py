"""The engineering-intelligence assistant over the whole platform (issue 17): the supervisor routes
to its three specialist subgraphs, the task picks the model group, and the pipelines (1:1 prep,
text to a gated SQL query, anomaly alerts on the bus, graph-augmented answers) work on a small
sample organisation's real events, stored by analytics (chDB) and projected into the graph.

One module fixture loads the organisation once (three weeks, about 200 events) into a fresh
tenant; each test is one or two agent runs.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import nats
import pytest
from nats.aio.client import Client as NatsClient
from nats.js.api import DeliverPolicy

from agentbus.contracts import DomainEvent, GraphQuery, GraphResult, RunEvent, new_id
from agentbus.contracts import subjects as s
from agentbus.contracts.insights import (
    ANALYTICS_SQL,
    AnalyticsSql,
    AnomalyDetected,
    SqlResult,
    anomaly_alert,
)
from agentbus.runtime.platform import Platform
from agentbus.runtime.sample_events import Organisation, generate

from .test_agents import events, submit

pytestmark = pytest.mark.e2e

ORG = Path(__file__).resolve().parents[2] / "samples" / "acme" / "org.json"


@pytest.fixture(scope="module")
async def sample(platform: Platform) -> AsyncIterator[dict[str, Any]]:
    """A fresh tenant with three weeks of the Acme sample organisation, stored and projected."""
    raw = json.loads(ORG.read_text())
    org = Organisation.from_json({**raw, "days": 21})
    tenant = f"eia{new_id()[:8]}"
    end = datetime.now(UTC).replace(microsecond=0)
    made = generate(org, tenant, end)
    nc = await nats.connect(platform.engines.urls()["nats"])
    js = nc.jetstream()
    for event in made.events:
        await js.publish(
            s.domain_event(tenant, event.source, event.type),
            event.model_dump_json().encode(),
            headers={"Nats-Msg-Id": event.id},
        )

    async def stored() -> bool:
        req = AnalyticsSql(tenant_id=tenant, sql="SELECT count() FROM events")
        reply = await nc.request(ANALYTICS_SQL, req.model_dump_json().encode(), timeout=30)
        return SqlResult.model_validate_json(reply.data).rows == [[len(made.events)]]

    async def projected() -> bool:
        q = GraphQuery(tenant_id=tenant, name="work_of", params={"person": "Lena Fischer"})
        reply = await nc.request(s.GRAPH_QUERY, q.model_dump_json().encode(), timeout=30)
        rows = GraphResult.model_validate_json(reply.data).rows
        return {r["repository"] for r in rows} == {"infrastructure", "inventory"}

    for check in (stored, projected):
        for _ in range(600):
            if await check():
                break
            await asyncio.sleep(0.2)
        else:
            raise AssertionError(f"the sample events were never {check.__name__}")
    yield {"tenant": tenant, "events": made.events, "end": end}
    await nc.close()


@pytest.fixture
async def nc(platform: Platform) -> AsyncIterator[NatsClient]:
    client = await nats.connect(platform.engines.urls()["nats"])
    yield client
    await client.close()


async def ask(nc: NatsClient, tenant: str, question: str) -> list[RunEvent]:
    run = await submit(
        nc,
        tenant_id=tenant,
        assistant_id="agent",
        input={"messages": [{"role": "user", "content": question}]},
    )
    seen = [e async for e in events(nc, run.run_id)]
    assert seen[-1].status == "success", seen[-1]
    return seen


def first(seen: list[RunEvent], type_: str, **data: Any) -> RunEvent:
    return next(
        e for e in seen if e.type == type_ and all(e.data.get(k) == v for k, v in data.items())
    )


async def test_one_on_one_prep_is_planned_by_the_resource_planner_subgraph(
    nc: NatsClient, sample: dict[str, Any]
) -> None:
    seen = await ask(nc, sample["tenant"], "Prepare my 1:1 with Priya Nair")
    routing = first(seen, "routing", step=1)
    assert routing.node == "supervisor" and routing.data["specialists"] == ["resource_planner"]
    # The routing call is fast; the specialist and the answer use the planning task's group.
    selections = [e.data for e in seen if e.type == "model_selection"]
    assert selections[0]["group"] == "fast" and selections[0]["task"] == "planning"
    assert {x["group"] for x in selections[1:]} == {"deep"}
    assert all(x["model"] and "1:1" in x["reason"] for x in selections[1:]), selections
    # The subgraph's own steps reach the client, under its namespace.
    inside = [e for e in seen if e.namespace]
    assert {(e.namespace or [""])[0].split(":")[0] for e in inside} == {"resource_planner"}
    assert {"node_start", "model_selection", "tool_start", "tool_end"} <= {e.type for e in inside}
    end = first(seen, "tool_end", tool="one_on_one_prep")
    assert end.data["ok"] and end.data["specialist"] == "resource_planner", end.data
    assert len(end.data["sources"]) == 5 and end.data["queries"]
    # The brief, from the real graph and events: Priya commits only to checkout (Payments).
    sections = {r["section"]: r for r in (await tool_result(nc, seen, "one_on_one_prep"))["rows"]}
    assert (
        "checkout" in sections["ownership"]["detail"] and "Payments" in sections["team"]["detail"]
    )
    assert "Rust" in sections["skills"]["detail"]
    answer = seen[-1].data["answer"]
    assert "checkout" in answer and "I found nothing" not in answer, answer


async def tool_result(nc: NatsClient, seen: list[RunEvent], tool: str) -> dict[str, Any]:
    """The whole result of `tool` in the run, as its thread's state keeps it."""
    from agentbus.contracts import ThreadState, ThreadStateRequest

    req = ThreadStateRequest(tenant_id=seen[0].tenant_id, thread_id=seen[0].thread_id)
    reply = await nc.request(s.THREADS_STATE, req.model_dump_json().encode(), timeout=10)
    state = ThreadState.model_validate_json(reply.data)
    for m in state.current.values["messages"]:
        if m.get("role") == "tool" and m.get("name") == tool:
            result: dict[str, Any] = json.loads(m["content"])
            return result
    raise AssertionError(f"no {tool} result in the thread")


async def test_plain_language_question_becomes_a_gated_tenant_scoped_query(
    nc: NatsClient, sample: dict[str, Any]
) -> None:
    seen = await ask(nc, sample["tenant"], "How many incidents per day this month?")
    assert first(seen, "routing", step=1).data["specialists"] == ["delivery_metrics"]
    end = first(seen, "tool_end", tool="ask_event_data")
    assert end.data["ok"], end.data
    query = end.data["query"]  # the generated query is shown in the step
    assert "GROUP BY day" in query and query.count("tenant_id = {tenant:String}") == 1
    assert end.data["translation"] == "rule-based translation"
    rows = (await tool_result(nc, seen, "ask_event_data"))["rows"]
    since = datetime.now(UTC) - timedelta(days=30)
    expected = Counter(
        e.ts.date().isoformat()
        for e in sample["events"]
        if e.type == "incident" and e.data["status"] == "open" and e.ts >= since
    )
    assert {str(day)[:10]: n for day, n in rows} == dict(expected)


async def test_anomalies_are_published_on_the_bus_and_read_back_as_alerts(
    nc: NatsClient, sample: dict[str, Any]
) -> None:
    tenant = sample["tenant"]
    js = nc.jetstream()
    alerts = await js.subscribe(
        anomaly_alert(tenant), ordered_consumer=True, deliver_policy=DeliverPolicy.ALL
    )
    # A burst of deployments today: far above the sample's few a day.
    burst = [
        DomainEvent(
            tenant_id=tenant,
            source="shipit",
            type="deployment",
            data={"service": "storefront", "deployment_id": f"burst-{i}", "commits": []},
        )
        for i in range(25)
    ]
    for event in burst:
        await js.publish(
            s.domain_event(tenant, "shipit", "deployment"), event.model_dump_json().encode()
        )
    total = len(sample["events"]) + len(burst)
    for _ in range(300):
        req = AnalyticsSql(tenant_id=tenant, sql="SELECT count() FROM events")
        reply = await nc.request(ANALYTICS_SQL, req.model_dump_json().encode(), timeout=30)
        if SqlResult.model_validate_json(reply.data).rows == [[total]]:
            break
        await asyncio.sleep(0.2)

    seen = await ask(nc, tenant, "Are there any anomalies in deployments?")
    end = first(seen, "tool_end", tool="detect_anomalies")
    assert end.data["ok"] and end.data["alerts_published"] >= 1, end.data

    async def next_alerts(count: int) -> list[AnomalyDetected]:
        return [
            AnomalyDetected.model_validate_json((await alerts.next_msg(timeout=10)).data)
            for _ in range(count)
        ]

    received = await next_alerts(end.data["alerts_published"])
    today = datetime.now(UTC).date().isoformat()
    spike = [a for a in received if a.series == "dora.deployments" and a.day == today]
    assert spike and spike[0].direction == "high" and spike[0].tenant_id == tenant, received

    # The same scan again repeats no alert (one per tenant, series and day). It may raise new
    # ones: the first question's own usage telemetry can make today's usage series stand out.
    again = await ask(nc, tenant, "Are there any anomalies in deployments?")
    repeat = first(again, "tool_end", tool="detect_anomalies")
    assert repeat.data["ok"], repeat.data
    more = await next_alerts(repeat.data["alerts_published"])
    with pytest.raises(TimeoutError):
        await alerts.next_msg(timeout=2)
    await alerts.unsubscribe()
    keys = [(a.series, a.day) for a in received + more]
    assert len(keys) == len(set(keys)), keys

    # The insights specialist reads them back from the ALERTS stream.
    read = await ask(nc, tenant, "Which anomaly alerts were raised recently?")
    assert first(read, "routing", step=1).data["specialists"] == ["insights"]
    rows = (await tool_result(nc, read, "recent_alerts"))["rows"]
    assert {(r["series"], r["day"]) for r in rows} >= {("dora.deployments", today)}


async def test_graph_augmented_answer_joins_documents_and_ownership(
    nc: NatsClient, sample: dict[str, Any]
) -> None:
    from agentbus.contracts import DocumentIndexed
    from agentbus.runtime.clients.ingest import follow
    from agentbus.runtime.clients.ingest import submit as submit_document

    tenant = sample["tenant"]
    runbook = (
        "# Checkout rollback runbook\n\nWhen a checkout deployment fails, roll the checkout "
        "service back to the previous release with the deploy tool. Then page the checkout "
        "owners and open an incident.\n"
    )
    sub = await submit_document(nc, tenant, runbook.encode(), filename="rollback.md")
    async for event in follow(nc, sub.document_id, sha256=sub.sha256, timeout=180):
        if isinstance(event, DocumentIndexed):
            break
    seen = await ask(nc, tenant, "Who owns the service in the rollback runbook?")
    assert first(seen, "routing", step=1).data["specialists"] == ["insights"]
    end = first(seen, "tool_end", tool="graph_augmented_answer")
    assert end.data["ok"], end.data
    result = await tool_result(nc, seen, "graph_augmented_answer")
    assert result["hits"] and result["hits"][0]["document_id"] == sub.document_id
    owners = {o for r in result["rows"] if r["repository"] == "checkout" for o in r["owners"]}
    assert owners == {"Payments"}, result["rows"]
    assert seen[-1].data["citations"], seen[-1].data  # the passage is cited
