"""Limits that keep one tenant from stalling everyone's runs (issue 13, point 3): a run time
limit (default and per assistant), a per-tenant cap on the runs a replica executes at once, and
diagnostic assistants only when the setting is on."""

from __future__ import annotations

import json
from collections.abc import Callable

import nats
import pytest
from nats.aio.client import Client as NatsClient

from agentbus.contracts import RunEvent, new_id
from agentbus.contracts import subjects as s
from agentbus.contracts.streams import ORCHESTRATOR_RUNS
from agentbus.orchestrator.app import build
from agentbus.orchestrator.settings import OrchestratorSettings
from agentbus.runtime.chassis import Service
from agentbus.runtime.testing import running

from .test_runs import collect, submit


@pytest.fixture
def orchestrator_with(
    service_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> Callable[[dict[str, str]], object]:
    """An in-process orchestrator with extra AGENTBUS_* settings."""

    def start(env: dict[str, str]) -> object:
        for key, value in env.items():
            monkeypatch.setenv(key, value)

        class Running:
            async def __aenter__(self) -> tuple[NatsClient, Service]:
                self.service = build(OrchestratorSettings())
                self.ctx = running(self.service)
                await self.ctx.__aenter__()
                self.nc = await nats.connect(service_env["AGENTBUS_NATS_URL"])
                return self.nc, self.service

            async def __aexit__(self, *exc: object) -> None:
                await self.nc.close()
                await self.ctx.__aexit__(*exc)

        return Running()

    return start


async def test_a_run_over_its_time_limit_ends_with_a_timeout_and_frees_its_slot(
    orchestrator_with: Callable[[dict[str, str]], object],
) -> None:
    env = {
        "AGENTBUS_MAX_CONCURRENT_RUNS": "1",
        "AGENTBUS_RUN_TIMEOUTS": json.dumps({"steps": 1}),
    }
    async with orchestrator_with(env) as (nc, _):  # type: ignore[attr-defined]
        slow = await submit(nc, assistant_id="steps", input={"steps": 1, "delay": 120})
        after = await submit(
            nc, assistant_id="echo", input={"messages": [{"role": "user", "content": "next"}]}
        )
        got = await collect(nc, slow.run_id)
        assert got[-1].type == "end" and got[-1].status == "error", got[-1]
        assert got[-1].data["reason"] == "timeout"
        errors = [e for e in got if e.type == "error"]
        assert errors and errors[-1].data["reason"] == "timeout"
        # The only slot is free again: the next run is executed and succeeds.
        nxt = await collect(nc, after.run_id)
        assert nxt[-1].status == "success" and nxt[-1].data["answer"] == "next"


async def test_one_tenant_cannot_take_every_slot(
    orchestrator_with: Callable[[dict[str, str]], object],
) -> None:
    env = {"AGENTBUS_MAX_CONCURRENT_RUNS": "2", "AGENTBUS_MAX_RUNS_PER_TENANT": "1"}
    async with orchestrator_with(env) as (nc, _):  # type: ignore[attr-defined]
        greedy = [
            await submit(
                nc, tenant_id="greedy", assistant_id="steps", input={"steps": 1, "delay": 4}
            )
            for _ in range(2)
        ]
        other = await submit(
            nc,
            tenant_id="patient",
            assistant_id="echo",
            input={"messages": [{"role": "user", "content": "my turn"}]},
        )
        # The other tenant's run ends before greedy's second one starts: greedy holds at most
        # one of the two slots, so the second waits for the first while the other runs.
        got_other = await collect(nc, other.run_id)
        second = await collect(nc, greedy[1].run_id)
        assert got_other[-1].status == "success"
        assert second[-1].status == "success"  # waited its turn, was not lost
        assert got_other[-1].ts < second[0].ts, (got_other[-1], second[0])


async def test_diagnostic_assistants_are_off_unless_enabled(
    orchestrator_with: Callable[[dict[str, str]], object],
) -> None:
    async with orchestrator_with({"AGENTBUS_DIAGNOSTIC_ASSISTANTS": "false"}) as (nc, service):  # type: ignore[attr-defined]
        run = await submit(nc, assistant_id="steps", input={"steps": 1, "delay": 0})
        got: list[RunEvent] = await collect(nc, run.run_id)
        assert [e.type for e in got] == ["error", "end"] and got[-1].status == "error"
        assert "unknown" in got[0].data["message"]
        assert service.rejects.value(s.RUNS_SUBMIT, "unknown_assistant") == 1
        echo = await submit(
            nc, assistant_id="echo", input={"messages": [{"role": "user", "content": new_id()}]}
        )
        assert (await collect(nc, echo.run_id))[-1].status == "success"


async def test_a_burst_over_the_tenant_cap_waits_for_room_instead_of_the_nak_timer(
    orchestrator_with: Callable[[dict[str, str]], object],
) -> None:
    """Runs past the tenant's cap wait in the replica (their slot lent to others) and start
    when one of the tenant's runs ends: none goes back to the stream, none is refused."""
    env = {"AGENTBUS_MAX_CONCURRENT_RUNS": "4", "AGENTBUS_MAX_RUNS_PER_TENANT": "2"}
    async with orchestrator_with(env) as (nc, _):  # type: ignore[attr-defined]
        js = nc.jetstream()
        before = await js.consumer_info(ORCHESTRATOR_RUNS.stream, ORCHESTRATOR_RUNS.durable)
        tenant = f"burst-{new_id()[:8]}"
        burst = [
            await submit(nc, tenant_id=tenant, assistant_id="steps", input={"steps": 1, "delay": 1})
            for _ in range(4)
        ]
        other = await submit(
            nc,
            tenant_id="patient",
            assistant_id="echo",
            input={"messages": [{"role": "user", "content": "not behind the burst"}]},
        )
        got = [await collect(nc, run.run_id) for run in burst]
        assert [events[-1].status for events in got] == ["success"] * 4
        # Two ran at once, two waited: the waiting ones began after one of the first two ended.
        firsts = sorted(events[0].ts for events in got)
        ends = sorted(events[-1].ts for events in got)
        assert firsts[2] >= ends[0], (firsts, ends)
        # The other tenant's run took a lent slot while the burst waited.
        got_other = await collect(nc, other.run_id)
        assert got_other[-1].status == "success" and got_other[-1].ts < ends[-1]
        after = await js.consumer_info(ORCHESTRATOR_RUNS.stream, ORCHESTRATOR_RUNS.durable)
        assert after.num_redelivered == before.num_redelivered  # no NAK, no redelivery
