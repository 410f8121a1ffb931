"""Pure logic of the LangGraph API: run events -> stream-mode frames, frame ids for resuming,
message shapes, and request validation (bad bodies are 422s naming the problem)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from agentbus.contracts import RunEvent
from agentbus.gateway.langgraph.encode import (
    Encoder,
    error_body,
    parse_event_id,
    with_message_roles,
    with_message_types,
)
from agentbus.gateway.langgraph.models import RunCreate, ThreadSearch


def event(seq: int, type_: str, data: dict[str, Any] | None = None, **kw: Any) -> RunEvent:
    return RunEvent.model_validate(
        {
            "tenant_id": "t",
            "run_id": "r1",
            "thread_id": "th",
            "seq": seq,
            "type": type_,
            "data": data or {},
            **kw,
        }
    )


RUN = [
    event(0, "metadata", {"run_id": "r1"}),
    event(1, "node_start", node="echo"),
    event(2, "token", {"text": "hi "}, node="echo"),
    event(3, "token", {"text": "there"}, node="echo"),
    event(4, "custom", {"step": 1}, node="echo"),
    event(5, "node_end", node="echo"),
    event(6, "updates", {"echo": {"messages": [{"role": "assistant", "content": "hi there"}]}}),
    event(7, "values", {"messages": [{"role": "assistant", "content": "hi there"}]}),
    event(8, "end", {"answer": "hi there"}, status="success"),
]


def decode(frames: list[bytes]) -> list[tuple[str | None, str, Any]]:
    out = []
    for raw in frames:
        fields = dict(line.split(": ", 1) for line in raw.decode().strip().splitlines())
        out.append((fields.get("id"), fields["event"], json.loads(fields["data"])))
    return out


def encode(modes: set[str], after: tuple[int, int] = (-1, 0)) -> list[tuple[str | None, str, Any]]:
    enc = Encoder(frozenset(modes), "r1", "th", "echo")
    return decode([f for e in RUN for f in enc.frames(e, after)])


def test_each_mode_gets_its_parts() -> None:
    values = encode({"values"})
    assert [(i, n) for i, n, _ in values] == [("7", "values")]
    assert values[0][2]["messages"][0]["type"] == "ai"
    updates = encode({"updates"})
    assert updates == [
        (
            "6",
            "updates",
            {"echo": {"messages": [{"role": "assistant", "content": "hi there", "type": "ai"}]}},
        )
    ]
    messages = encode({"messages-tuple"})
    assert [n for _, n, _ in messages] == ["messages", "messages"]
    chunk, meta = messages[0][2]
    assert chunk["type"] == "AIMessageChunk" and chunk["content"] == "hi "
    assert chunk["id"] == messages[1][2][0]["id"]  # one message, two chunks
    assert meta["langgraph_node"] == "echo" and meta["run_id"] == "r1"
    assert encode({"custom"}) == [("4", "custom", {"step": 1})]
    kinds = [d["event"] for _, n, d in encode({"events"}) if n == "events"]
    assert kinds == [
        "on_chain_start",
        "on_chat_model_stream",
        "on_chat_model_stream",
        "on_custom_event",
        "on_chain_end",
    ]


def test_frames_of_one_event_have_distinct_ids_and_resume_exactly() -> None:
    everything = encode({"messages-tuple", "events", "values"})
    ids = [i for i, _, _ in everything]
    assert len(ids) == len(set(ids))
    assert "2" in ids and "2.1" in ids  # a token is a `messages` and an `events` frame
    for k, (last_id, _, _) in enumerate(everything):
        assert (
            encode({"messages-tuple", "events", "values"}, parse_event_id(last_id))
            == (everything[k + 1 :])
        )


def test_event_ids_are_parsed_strictly() -> None:
    assert parse_event_id(None) == (-1, 0) and parse_event_id("") == (-1, 0)
    assert parse_event_id("-1") == (-1, 0)  # the JS SDK's joinStream: from the start
    assert parse_event_id("7") == (7, 0) and parse_event_id("7.2") == (7, 2)
    for bad in ("x", "7.x", "-2", "1.-1"):
        with pytest.raises(ValueError):
            parse_event_id(bad)


def test_errors_and_interrupts() -> None:
    enc = Encoder(frozenset({"values", "updates"}), "r1", "th", "steps")
    enc.frames(event(1, "values", {"done": [1]}))
    frames = decode(enc.frames(event(2, "end", {"interrupts": [{"q": "?"}]}, status="interrupted")))
    assert [n for _, n, _ in frames] == ["values", "updates"]
    assert frames[0][2] == {"done": [1], "__interrupt__": [{"value": {"q": "?"}, "id": "r1-0"}]}
    assert enc.result()["__interrupt__"]

    failing = Encoder(frozenset({"values"}), "r1", "th", "agent")
    failed = {"reason": "graph_error", "message": "The run failed while its graph was running"}
    out = decode(failing.frames(event(1, "error", failed)))
    body = {"error": "graph_error", "message": "The run failed while its graph was running"}
    assert out == [("1", "error", body)]
    assert failing.result() == {"__error__": body}
    # No code, or something that is not one: a generic code, never text taken for a code.
    assert error_body({"message": "unknown graph 'x'"}) == {
        "error": "run_error",
        "message": "unknown graph 'x'",
    }
    assert error_body({"reason": "ValueError: boom", "message": "m"})["error"] == "run_error"


def test_messages_convert_both_ways() -> None:
    assert with_message_roles({"messages": [{"type": "human", "content": "x"}]}) == {
        "messages": [{"type": "human", "content": "x", "role": "user"}]
    }
    assert with_message_types({"messages": [{"role": "tool", "content": "x"}], "n": 1}) == {
        "messages": [{"role": "tool", "content": "x", "type": "tool"}],
        "n": 1,
    }
    assert with_message_types("not a state") == "not a state"


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ({"assistant_id": "a", "multitask_strategy": "later"}, "multitask_strategy"),
        ({"assistant_id": "a", "stream_mode": "messages"}, "messages-tuple"),
        ({"assistant_id": "a", "stream_mode": ["values", "debug"]}, "debug"),
        ({"assistant_id": "a", "on_disconnect": "explode"}, "on_disconnect"),
        ({"assistant_id": "a", "interrupt_before": "all"}, "interrupt_before"),
        ({"assistant_id": "a", "webhook": ""}, "webhook"),
        ({"assistant_id": "a", "after_seconds": -1}, "after_seconds"),
        ({"assistant_id": "a", "after_seconds": 86_401}, "after_seconds"),
        ({"assistant_id": "a", "checkpoint": {"checkpoint_ns": "sub"}}, "checkpoint_ns"),
        (
            {"assistant_id": "a", "checkpoint": {"checkpoint_id": "1"}, "checkpoint_id": "2"},
            "different checkpoints",
        ),
        ({"assistant_id": "a", "command": {"goto": "x"}}, "goto"),
        ({"assistant_id": "a", "input": "text"}, "input"),
        ({"assistant_id": "a", "unknown": 1}, "unknown"),
        ({}, "assistant_id"),
    ],
)
def test_bad_run_bodies_name_the_problem(body: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValidationError) as err:
        RunCreate.model_validate(body)
    assert problem in str(err.value)


def test_run_from_a_checkpoint_and_breakpoints() -> None:
    run = RunCreate.model_validate(
        {"assistant_id": "a", "checkpoint": {"checkpoint_id": "c1", "thread_id": "t"}}
    )
    assert run.from_checkpoint == "c1"
    assert (
        RunCreate.model_validate({"assistant_id": "a", "checkpoint_id": "c2"}).from_checkpoint
        == "c2"
    )
    both = RunCreate.model_validate(
        {"assistant_id": "a", "interrupt_before": "*", "interrupt_after": ["n"]}
    )
    assert both.interrupt_before == "*" and both.interrupt_after == ["n"]


def test_run_body_defaults_match_the_sdk() -> None:
    run = RunCreate.model_validate(
        {"assistant_id": "agent", "stream_mode": ["values", "messages-tuple", "values"]}
    )
    assert run.multitask_strategy == "reject" and run.on_disconnect == "continue"
    assert run.modes == ["values", "messages-tuple"]
    assert RunCreate.model_validate({"assistant_id": "agent"}).modes == ["values"]
    with pytest.raises(ValidationError):
        ThreadSearch.model_validate({"limit": 0})


def test_a_subgraphs_tool_events_are_in_events_mode_without_subgraphs() -> None:
    """astream_events reports nested runs: a specialist's tool steps reach an `events` stream
    (the web app's tool timeline) whether or not the client asked for subgraph parts."""
    enc = Encoder(frozenset({"events"}), "r1", "th", "agent")
    ns = {"namespace": ["insights:t1"], "node": "tools"}
    start = event(1, "tool_start", {"tool": "search_documents", "arguments": {"q": "x"}}, **ns)
    end = event(2, "tool_end", {"tool": "search_documents", "result_preview": "ok"}, **ns)
    got = decode([f for e in (start, end) for f in enc.frames(e)])
    assert [(n, d["event"], d["name"]) for _, n, d in got] == [
        ("events", "on_tool_start", "search_documents"),
        ("events", "on_tool_end", "search_documents"),
    ]
    # A token inside the subgraph is still only a subgraph part.
    token = event(3, "token", {"text": "hi"}, **ns)
    assert decode(enc.frames(token)) == []
