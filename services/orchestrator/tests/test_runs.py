"""Runs over the real bus and PostgreSQL checkpointer, with the diagnostic assistants
(`echo`, `steps`); the supervisor has its own tests with the retrieval service."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import nats
import pytest
from nats.aio.client import Client as NatsClient
from nats.js.api import DeliverPolicy

from agentbus.contracts import (
    ErrorReply,
    RunControl,
    RunEvent,
    RunRequested,
    ThreadState,
    ThreadStateRequest,
    new_id,
)
from agentbus.contracts import subjects as s
from agentbus.orchestrator.app import build
from agentbus.orchestrator.settings import OrchestratorSettings
from agentbus.runtime.chassis import Service
from agentbus.runtime.testing import running

SERVICES: list[Service] = []


@pytest.fixture
async def orchestrator(service_env: dict[str, str]) -> AsyncIterator[NatsClient]:
    service = build(OrchestratorSettings())
    SERVICES[:] = [service]
    async with running(service):
        nc = await nats.connect(service_env["AGENTBUS_NATS_URL"])
        yield nc
        await nc.close()


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


async def events(nc: NatsClient, run_id: str, until_end: bool = True) -> AsyncIterator[RunEvent]:
    sub = await nc.jetstream().subscribe(
        s.run_events(run_id), ordered_consumer=True, deliver_policy=DeliverPolicy.ALL
    )
    try:
        while True:
            msg = await sub.next_msg(timeout=60)
            event = RunEvent.model_validate_json(msg.data)
            yield event
            if until_end and event.type == "end":
                return
    finally:
        await sub.unsubscribe()


async def collect(nc: NatsClient, run_id: str) -> list[RunEvent]:
    return [e async for e in events(nc, run_id)]


async def test_echo_run_streams_ordered_events_and_ends(orchestrator: NatsClient) -> None:
    run = await submit(
        orchestrator,
        assistant_id="echo",
        input={"messages": [{"role": "user", "content": "hello over the bus"}]},
        stream_modes=["values", "updates"],
    )
    got = await collect(orchestrator, run.run_id)
    assert [e.seq for e in got] == list(range(len(got)))
    assert got[0].type == "metadata" and got[0].data["run_id"] == run.run_id
    tokens = "".join(e.data["text"] for e in got if e.type == "token")
    assert tokens.strip() == "hello over the bus"
    assert {"node_start", "node_end", "updates", "values"} <= {e.type for e in got}
    assert got[-1].type == "end" and got[-1].status == "success"
    assert got[-1].data["answer"] == "hello over the bus"
    # Acked right after the end event was stored: the work queue empties.
    for _ in range(50):
        if (await orchestrator.jetstream().stream_info("RUNS")).state.messages == 0:
            break
        await asyncio.sleep(0.1)
    assert (await orchestrator.jetstream().stream_info("RUNS")).state.messages == 0


async def test_thread_continues_and_state_is_answered(orchestrator: NatsClient) -> None:
    thread = new_id()
    for text in ("first turn", "second turn"):
        run = await submit(
            orchestrator,
            assistant_id="echo",
            thread_id=thread,
            input={"messages": [{"role": "user", "content": text}]},
        )
        await collect(orchestrator, run.run_id)
    req = ThreadStateRequest(tenant_id="acme", thread_id=thread, history_limit=10)
    reply = await orchestrator.request(s.THREADS_STATE, req.model_dump_json().encode(), timeout=10)
    state = ThreadState.model_validate_json(reply.data)
    contents = [m["content"] for m in state.current.values["messages"]]
    assert contents == ["first turn", "first turn", "second turn", "second turn"]
    assert state.current.checkpoint_id and state.current.next == []
    assert len(state.history) >= 2
    # Another tenant cannot read it.
    other = ThreadStateRequest(tenant_id="beta", thread_id=thread)
    reply = await orchestrator.request(
        s.THREADS_STATE, other.model_dump_json().encode(), timeout=10
    )
    assert ThreadState.model_validate_json(reply.data).found is False
    bad = await orchestrator.request(s.THREADS_STATE, b'{"thread_id": "x"}', timeout=10)
    assert ErrorReply.model_validate_json(bad.data).reason == "schema"


async def test_cancel_stops_a_running_run(orchestrator: NatsClient) -> None:
    run = await submit(orchestrator, assistant_id="steps", input={"steps": 20, "delay": 0.3})
    seen: list[RunEvent] = []
    async for event in events(orchestrator, run.run_id):
        seen.append(event)
        if event.type == "custom" and event.data["step"] == 1:
            ctl = RunControl(tenant_id="acme", run_id=run.run_id, action="cancel")
            await orchestrator.publish(s.run_control(run.run_id), ctl.model_dump_json().encode())
    assert seen[-1].type == "end" and seen[-1].status == "cancelled"
    steps = [e.data["step"] for e in seen if e.type == "custom"]
    assert steps[-1] < 5  # stopped promptly, far from the 20 steps


async def test_interrupt_then_resume_with_a_command(orchestrator: NatsClient) -> None:
    thread = new_id()
    run = await submit(
        orchestrator, assistant_id="steps", thread_id=thread, input={"steps": 4, "delay": 0.3}
    )
    seen: list[RunEvent] = []
    async for event in events(orchestrator, run.run_id):
        seen.append(event)
        if event.type == "custom" and event.data["step"] == 1:
            ctl = RunControl(
                tenant_id="acme", run_id=run.run_id, action="interrupt", reason="check with a human"
            )
            await orchestrator.publish(s.run_control(run.run_id), ctl.model_dump_json().encode())
    assert seen[-1].status == "interrupted"
    assert seen[-1].data["interrupts"][0]["reason"] == "check with a human"
    done_before = max(e.data["step"] for e in seen if e.type == "custom")
    resumed = await submit(
        orchestrator, assistant_id="steps", thread_id=thread, command={"resume": "go on"}
    )
    rest = await collect(orchestrator, resumed.run_id)
    assert rest[-1].status == "success"
    steps_after = [e.data["step"] for e in rest if e.type == "custom"]
    assert steps_after and steps_after[0] == done_before + 1 and steps_after[-1] == 4


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{broken", "invalid_json"),
        (json.dumps({"run_id": "r1", "thread_id": "t1"}).encode(), "schema"),  # no tenant
    ],
)
async def test_malformed_runs_are_rejected_and_serving_goes_on(
    orchestrator: NatsClient, body: bytes, reason: str
) -> None:
    await orchestrator.jetstream().publish(s.RUNS_SUBMIT, body, headers={"Nats-Msg-Id": new_id()})
    run = await submit(
        orchestrator,
        assistant_id="echo",
        input={"messages": [{"role": "user", "content": "still here"}]},
    )
    got = await collect(orchestrator, run.run_id)
    assert got[-1].status == "success"
    assert SERVICES[0].rejects.value(s.RUNS_SUBMIT, reason) >= 1


async def test_unknown_assistant_ends_with_an_error(orchestrator: NatsClient) -> None:
    run = await submit(orchestrator, assistant_id="nope", input={})
    got = await collect(orchestrator, run.run_id)
    assert [e.type for e in got] == ["error", "end"]
    assert "unknown assistant" in got[0].data["message"]
    assert got[-1].status == "error"
    assert SERVICES[0].rejects.value(s.RUNS_SUBMIT, "unknown_assistant") == 1


async def test_redelivered_finished_run_is_not_executed_again(orchestrator: NatsClient) -> None:
    run = await submit(
        orchestrator, assistant_id="echo", input={"messages": [{"role": "user", "content": "once"}]}
    )
    first = await collect(orchestrator, run.run_id)
    # The same run again, past the dedupe window (a new message id): nothing is re-published.
    await orchestrator.jetstream().publish(
        s.RUNS_SUBMIT, run.model_dump_json().encode(), headers={"Nats-Msg-Id": new_id()}
    )
    await asyncio.sleep(1.5)
    info = await orchestrator.jetstream().stream_info(
        "RUN_EVENTS", subjects_filter=s.run_events(run.run_id)
    )
    assert info.state.messages >= len(first)
    again = await collect(orchestrator, run.run_id)
    assert [e.seq for e in again] == [e.seq for e in first]


async def test_an_event_the_bus_refuses_retries_the_run_instead_of_failing_it(
    service_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """One run event refused by JetStream (as while a stream elects a new leader): the run goes
    back to the stream and resumes from its checkpoint; it does not end as the graph's error,
    and its readers see every step once, with no gap in the sequence."""
    from nats.js.errors import ServiceUnavailableError

    from agentbus.orchestrator.runner import Runner

    publish = Runner.publish
    refused: list[str] = []

    async def refuse_once(self: Runner, subject: str, data: bytes, headers: dict[str, str]) -> None:
        event = json.loads(data) if subject.startswith("agentbus.v1.runs.events.") else {}
        if event.get("type") == "custom" and event["data"]["step"] == 2 and not refused:
            refused.append(subject)
            raise ServiceUnavailableError(description="JetStream system temporarily unavailable")
        await publish(self, subject, data, headers)

    monkeypatch.setattr(Runner, "publish", refuse_once)
    service = build(OrchestratorSettings())
    async with running(service):
        nc = await nats.connect(service_env["AGENTBUS_NATS_URL"])
        try:
            run = await submit(nc, assistant_id="steps", input={"steps": 3, "delay": 0.2})
            got = await collect(nc, run.run_id)
        finally:
            await nc.close()
    assert refused, "the fault was not injected"
    assert not [e for e in got if e.type == "error"], got
    assert got[-1].status == "success", got[-1]
    assert [e.data["step"] for e in got if e.type == "custom"] == [1, 2, 3]
    assert [e.seq for e in got] == list(range(len(got)))


async def test_a_run_on_its_last_delivery_waits_out_the_bus_instead_of_being_dropped(
    service_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bus refuses the run's events on its first delivery and twice more on what the
    orchestrator counts as the last one (max_deliver 2 here): a NAK then would leave the run to
    no one, so that delivery keeps it and retries in place. It ends `success` with every step
    once, delivered twice, never a third time."""
    import dataclasses

    from nats.js.errors import ServiceUnavailableError

    from agentbus.orchestrator import runner as runner_module
    from agentbus.orchestrator.runner import Runner
    from agentbus.runtime.consuming import delivery_count

    spec = dataclasses.replace(runner_module.ORCHESTRATOR_RUNS, max_deliver=2, nak_delays_s=(0.2,))
    monkeypatch.setattr(runner_module, "ORCHESTRATOR_RUNS", spec)
    publish = Runner.publish
    refused: list[str] = []

    async def refuse_thrice(
        self: Runner, subject: str, data: bytes, headers: dict[str, str]
    ) -> None:
        event = json.loads(data) if subject.startswith("agentbus.v1.runs.events.") else {}
        if event.get("type") == "custom" and event["data"]["step"] == 2 and len(refused) < 3:
            refused.append(subject)
            raise ServiceUnavailableError(description="insufficient resources")
        await publish(self, subject, data, headers)

    monkeypatch.setattr(Runner, "publish", refuse_thrice)
    execute = Runner._execute_through_outage
    deliveries: list[int] = []

    async def counted(self: Runner, msg: Any, run: Any) -> Any:
        deliveries.append(delivery_count(msg))
        return await execute(self, msg, run)

    monkeypatch.setattr(Runner, "_execute_through_outage", counted)
    service = build(OrchestratorSettings())
    async with running(service):
        nc = await nats.connect(service_env["AGENTBUS_NATS_URL"])
        try:
            run = await submit(nc, assistant_id="steps", input={"steps": 3, "delay": 0.1})
            got = await collect(nc, run.run_id)
        finally:
            await nc.close()
    assert len(refused) == 3, refused
    assert deliveries == [1, 2], deliveries
    assert got[-1].status == "success", got[-1]
    assert [e.data["step"] for e in got if e.type == "custom"] == [1, 2, 3]
    assert [e.seq for e in got] == list(range(len(got)))


async def test_telemetry_the_bus_refuses_is_sent_later_and_the_run_succeeds(
    service_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The run's RunFinished refused twice (TELEMETRY out of storage): the run still ends
    `success` at once, and the record reaches the bus later, once (it used to be dropped)."""
    from nats.js.errors import ServiceUnavailableError

    from agentbus.contracts import RunFinished
    from agentbus.orchestrator.runner import Runner

    publish = Runner.publish
    refused: list[str] = []

    async def refuse_twice(
        self: Runner, subject: str, data: bytes, headers: dict[str, str]
    ) -> None:
        if subject == s.TELEMETRY_RUN_FINISHED and len(refused) < 2:
            refused.append(subject)
            raise ServiceUnavailableError(description="insufficient resources")
        await publish(self, subject, data, headers)

    monkeypatch.setattr(Runner, "publish", refuse_twice)
    service = build(OrchestratorSettings())
    async with running(service):
        nc = await nats.connect(service_env["AGENTBUS_NATS_URL"])
        try:
            finished = await nc.subscribe(s.TELEMETRY_RUN_FINISHED)
            run = await submit(nc, assistant_id="steps", input={"steps": 2, "delay": 0})
            got = await collect(nc, run.run_id)
            assert got[-1].status == "success", got[-1]
            records: list[RunFinished] = []
            with contextlib.suppress(TimeoutError):
                while True:  # the outbox's first retries: 0.5 s, then 1 s
                    msg = await finished.next_msg(timeout=5)
                    record = RunFinished.model_validate_json(msg.data)
                    if record.run_id == run.run_id:
                        records.append(record)
        finally:
            await nc.close()
    assert len(refused) == 2, refused
    assert [r.status for r in records] == ["success"]
