"""Every service's AsyncAPI document is generated from its code and names what it consumes."""

from __future__ import annotations

import pytest

from agentbus.contracts import SERVICES, SUBJECTS
from agentbus.contracts import subjects as s
from agentbus.runtime.cli import asyncapi_document

# Subjects whose consumers are wired in code so far; the rest arrive with their issues.
WIRED = {"ingest", "retrieval", "analytics"}


@pytest.mark.parametrize("service", SERVICES)
def test_asyncapi_is_generated_from_the_broker(service: str) -> None:
    doc = asyncapi_document(service)
    assert doc["asyncapi"].startswith("3.")
    assert doc["info"]["title"] == f"agentbus-{service}"
    addresses = {channel["address"] for channel in doc.get("channels", {}).values()}
    if service in WIRED:
        # Health is answered by the NATS micro endpoint, not a broker subscriber.
        consumed = {
            spec.subject
            for spec in SUBJECTS
            if service in spec.consumers and spec.subject != s.HEALTH_ALL
        }
        # One durable consumer on a wildcard (analytics on telemetry.>) covers its subjects.
        uncovered = {c for c in consumed if not any(s.matches(a, c) for a in addresses)}
        assert not uncovered, (service, uncovered)
