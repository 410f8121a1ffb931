"""Anomaly alerts when ALERTS refuses them (full, or electing a leader): the findings are still
the tool's answer, the alerts wait in the replica's outbox and reach the stream once it accepts,
each once. Real NATS with the provisioned streams; analytics is a responder on its subject that
answers with one anomaly row (the tool's part under test is the publishing)."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import uuid

import nats
from nats.aio.msg import Msg
from prometheus_client import CollectorRegistry

from agentbus.contracts import subjects as s
from agentbus.contracts.insights import AnomalyDetected, anomaly_alert
from agentbus.contracts.streams import ALERTS
from agentbus.orchestrator.tools import ToolBox
from agentbus.runtime.outbox import Outbox
from agentbus.runtime.provisioning import provision


async def test_refused_alerts_are_sent_later_and_the_findings_still_answer(nats_url: str) -> None:
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    await provision(js)
    tenant = f"alerts-{uuid.uuid4().hex[:8]}"
    row = {"series": "dora.deployments", "day": "2026-12-03", "value": 25.0,
           "baseline_median": 2.0, "z_score": 9.5, "direction": "high"}  # fmt: skip

    async def analytics(msg: Msg) -> None:
        await msg.respond(json.dumps({"columns": list(row), "rows": [list(row.values())]}).encode())

    responder = await nc.subscribe(s.ANALYTICS_QUERY, cb=analytics)
    registry = CollectorRegistry()

    async def publish(subject: str, data: bytes, headers: dict[str, str], _stream: str) -> None:
        await js.publish(subject, data, headers=headers)

    outbox = Outbox(publish, registry, delays_s=(0.2, 0.5, 1.0, 2.0))
    box = ToolBox(nc, timeout=10, outbox=outbox)
    config = (await js.stream_info(ALERTS.name)).config
    await js.update_stream(dataclasses.replace(config, max_msg_size=16))
    try:
        result = await box.call(tenant, "detect_anomalies", {"series": "dora.deployments"})
        assert "error" not in result, result
        assert result["rows"] and result["alerts_published"] == 0, result
        assert result["alerts_deferred"] == 1, result
        labels = {"stream": "ALERTS", "outcome": "deferred"}
        assert registry.get_sample_value("agentbus_deferred_publishes_total", labels) == 1
    finally:
        await js.update_stream(config)
    await outbox.close(10)
    resent = {"stream": "ALERTS", "outcome": "resent"}
    assert registry.get_sample_value("agentbus_deferred_publishes_total", resent) == 1
    # The same scan again: the alert is there already, so nothing new is published or deferred.
    again = await box.call(tenant, "detect_anomalies", {"series": "dora.deployments"})
    assert (again["alerts_published"], again.get("alerts_deferred")) == (0, None), again
    sub = await js.subscribe(anomaly_alert(tenant), stream=ALERTS.name, ordered_consumer=True)
    alerts: list[AnomalyDetected] = []
    with contextlib.suppress(TimeoutError):
        while True:
            alerts.append(AnomalyDetected.model_validate_json((await sub.next_msg(1)).data))
    assert [(a.series, a.day, a.tenant_id) for a in alerts] == [
        ("dora.deployments", "2026-12-03", tenant)
    ]
    await responder.unsubscribe()
    await nc.close()
