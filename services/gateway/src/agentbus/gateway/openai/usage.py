"""A run's token usage, summed from the run's own events: the orchestrator puts each model
call's tokens on its `model_selection` event (`usage`). Reading them from the run's stream (which
the adapter follows anyway, tenant-checked) means no subscription to
`agentbus.v1.telemetry.llm_usage`, where every tenant's calls go by."""

from __future__ import annotations

from typing import Any

from agentbus.contracts import RunEvent


class RunUsage:
    def __init__(self) -> None:
        self.prompt = 0
        self.completion = 0
        self.cached = 0

    def add(self, event: RunEvent) -> None:
        """Count one run event (only `model_selection` events carry usage)."""
        if event.type != "model_selection":
            return
        usage = event.data.get("usage")
        if not isinstance(usage, dict):
            return
        self.prompt += _count(usage.get("input_tokens"))
        self.completion += _count(usage.get("output_tokens"))
        self.cached += _count(usage.get("cached_tokens"))

    def usage(self) -> dict[str, Any]:
        return {
            "prompt_tokens": self.prompt,
            "completion_tokens": self.completion,
            "total_tokens": self.prompt + self.completion,
            "prompt_tokens_details": {"cached_tokens": self.cached},
        }


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0
