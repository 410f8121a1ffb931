"""The OpenAI adapter's `usage`: summed from the run's own `model_selection` events."""

from __future__ import annotations

from typing import Any

from agentbus.contracts import RunEvent
from agentbus.gateway.openai.usage import RunUsage


def ev(seq: int, type_: str, data: dict[str, Any]) -> RunEvent:
    return RunEvent(tenant_id="t", run_id="r", thread_id="th", seq=seq, type=type_, data=data)


def test_usage_sums_the_runs_model_calls_only() -> None:
    usage = RunUsage()
    for event in [
        ev(0, "model_selection", {"usage": {"input_tokens": 10, "output_tokens": 4}}),
        ev(1, "token", {"text": "hi", "usage": {"input_tokens": 99}}),  # not a model call
        ev(
            2,
            "model_selection",
            {"usage": {"input_tokens": 5, "output_tokens": 2, "cached_tokens": 3}},
        ),
        ev(3, "model_selection", {"model": "no usage reported"}),
        ev(4, "model_selection", {"usage": {"input_tokens": -7, "output_tokens": "many"}}),
    ]:
        usage.add(event)
    assert usage.usage() == {
        "prompt_tokens": 15,
        "completion_tokens": 6,
        "total_tokens": 21,
        "prompt_tokens_details": {"cached_tokens": 3},
    }
    assert RunUsage().usage()["total_tokens"] == 0
