"""Every service's AsyncAPI document is generated from its code and names the channels the
catalog says it consumes and publishes, with their payload contracts."""

from __future__ import annotations

from typing import Any

import pytest

from agentbus.contracts import SERVICES, SUBJECTS
from agentbus.contracts import subjects as s
from agentbus.contracts.insights import ALERTS_ANOMALY_ALL
from agentbus.runtime.cli import asyncapi_document

# Consumed without a standing broker subscriber, so absent from the document: the gateway follows
# one run's events (its republished copies; one document's progress) per HTTP stream, and the
# orchestrator's insights specialist reads a tenant's recent alerts, each with an ordered
# consumer opened for that read.
# The gateway reads an evaluation's last event when asked about it. Health is answered by the
# NATS micro endpoint of every service.
NOT_SUBSCRIBED = {
    ("gateway", s.RUN_EVENTS_ALL),
    ("gateway", s.RUN_EVENTS_STORED_ALL),
    ("gateway", s.INGEST_PROGRESS_ALL),
    ("gateway", s.EVALUATION_EVENTS_ALL),
    ("orchestrator", ALERTS_ANOMALY_ALL),
    *((service, s.HEALTH_ALL) for service in SERVICES),
}


def addresses(doc: dict[str, Any], action: str) -> dict[str, dict[str, Any]]:
    """address -> message payload, for the operations of one action (send or receive)."""
    found: dict[str, dict[str, Any]] = {}
    channels = {f"#/channels/{name}": channel for name, channel in doc.get("channels", {}).items()}
    messages = doc.get("components", {}).get("messages", {})
    for operation in doc.get("operations", {}).values():
        if operation["action"] != action:
            continue
        channel = channels[operation["channel"]["$ref"].replace("%2A", "*").replace("%3E", ">")]
        (message,) = channel["messages"].values()
        name = message["$ref"].removeprefix("#/components/messages/")
        found[channel["address"]] = messages[name.replace("%2A", "*").replace("%3E", ">")]
    return found


def schema_refs(doc: dict[str, Any], node: Any, seen: set[str] | None = None) -> set[str]:
    """The component schemas a payload refers to, through unions (the contracts it carries)."""
    seen = set() if seen is None else seen
    if isinstance(node, list):
        return set().union(*(schema_refs(doc, v, seen) for v in node))
    if not isinstance(node, dict):
        return set()
    found: set[str] = set()
    if "$ref" in node:
        name = str(node["$ref"]).rsplit("/", 1)[-1].replace("%2A", "*").replace("%3E", ">")
        if name not in seen:
            seen.add(name)
            found.add(name)
            found |= schema_refs(doc, doc["components"]["schemas"].get(name), seen)
    return found.union(*(schema_refs(doc, v, seen) for k, v in node.items() if k != "$ref"))


@pytest.mark.parametrize("service", SERVICES)
def test_asyncapi_is_generated_from_the_broker(service: str) -> None:
    doc = asyncapi_document(service)
    assert doc["asyncapi"].startswith("3.")
    assert doc["info"]["title"] == f"agentbus-{service}"

    received = addresses(doc, "receive")
    consumed = {
        spec.subject
        for spec in SUBJECTS
        if service in spec.consumers and (service, spec.subject) not in NOT_SUBSCRIBED
    }
    # One durable consumer on a wildcard (analytics on telemetry.>) covers its subjects.
    uncovered = {c for c in consumed if not any(s.matches(a, c) for a in received)}
    assert not uncovered, (service, uncovered)
    if service == "orchestrator":
        # Run control reaches every replica through the broker (middleware, tracing, metrics).
        assert s.RUN_CONTROL_ALL in received

    sent = addresses(doc, "send")
    produced = {spec.subject: spec for spec in SUBJECTS if service in spec.producers}
    assert set(sent) == set(produced), service
    for subject, message in sent.items():
        carried = {model.__name__ for model in produced[subject].payloads}
        assert carried <= schema_refs(doc, message["payload"]), (subject, message["payload"])
