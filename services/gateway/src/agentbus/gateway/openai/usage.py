"""A run's token usage: the orchestrator reports each model call on
`agentbus.v1.telemetry.llm_usage` (`LlmUsage`); this sums the calls of one run."""

from __future__ import annotations

from typing import Any

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from agentbus.contracts import subjects as s
from agentbus.contracts.telemetry import LlmUsage


class RunUsage:
    """Subscribed before the run is submitted (the first call may come at once), so calls are
    kept until the run id is known; only that run's calls count after."""

    def __init__(self) -> None:
        self.run_id: str | None = None
        self._calls: list[LlmUsage] = []
        self._sub: Subscription | None = None

    async def start(self, nc: NatsClient) -> None:
        self._sub = await nc.subscribe(s.TELEMETRY_LLM_USAGE, cb=self._on)

    async def _on(self, msg: Msg) -> None:
        try:
            call = LlmUsage.model_validate_json(msg.data)
        except ValueError:
            return
        if self.run_id is None or call.run_id == self.run_id:
            self._calls.append(call)

    async def stop(self, nc: NatsClient) -> None:
        if self._sub is not None:
            # Whatever the server sent before the run's end is read first.
            await nc.flush()
            await self._sub.unsubscribe()
            self._sub = None

    def usage(self) -> dict[str, Any]:
        calls = [c for c in self._calls if c.run_id == self.run_id and c.operation == "chat"]
        prompt = sum(c.input_tokens for c in calls)
        completion = sum(c.output_tokens for c in calls)
        return {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": sum(c.cached_tokens for c in calls)},
        }
