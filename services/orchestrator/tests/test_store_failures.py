"""What a failed store operation tells the caller: its own mistake in words, the store's
failure as a fixed sentence (the exception text stays in the orchestrator's log)."""

from __future__ import annotations

from agentbus.contracts import StoreRequest
from agentbus.orchestrator.store_ops import store_failure

REQ = StoreRequest(tenant_id="t", op="put", namespace=["a.b"], key="k", value={})


def test_a_request_error_keeps_its_words() -> None:
    reply = store_failure(REQ, ValueError("Namespace labels cannot contain periods ('.')"))
    assert reply.reason == "store_error"
    assert reply.error == "Namespace labels cannot contain periods ('.')"


def test_a_store_failure_is_a_fixed_sentence() -> None:
    failure = OSError("connection to server at 10.1.2.3, port 5432 failed: password for agentbus")
    reply = store_failure(REQ, failure)
    assert reply.reason == "store_unavailable"
    assert reply.error == "The store failed this operation"
    assert "10.1.2.3" not in reply.model_dump_json()
