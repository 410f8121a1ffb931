"""The adapters' pure translations of run events (no I/O): AI SDK chunks, OpenAI chunks and
completions, A2A objects in both protocol versions. The real clients read them in the e2e tests
(test_aisdk, test_openai, test_a2a); these pin the orderings and edge cases."""

from __future__ import annotations

from typing import Any

import pytest

from agentbus.contracts import RunEvent
from agentbus.gateway.a2a.wire import Encoder, RpcError, TaskView, parse_send
from agentbus.gateway.aisdk.chunks import ChunkEncoder
from agentbus.gateway.openai.encode import Completion

CITE = {"document_id": "d1", "title": "Handbook", "page": 2, "chunk_index": 0, "score": 0.9}


def ev(seq: int, type_: str, data: dict[str, Any] | None = None, **kw: Any) -> RunEvent:
    return RunEvent(
        tenant_id="t", run_id="r1", thread_id="th", seq=seq, type=type_, data=data or {}, **kw
    )


AGENT_RUN = [
    ev(0, "metadata"),
    ev(1, "node_start", node="supervisor"),
    ev(2, "model_selection", {"model": "m"}, node="supervisor"),
    ev(3, "routing", {"specialists": ["documents"]}, node="supervisor"),
    ev(4, "node_end", node="supervisor"),
    ev(5, "node_start", node="tools"),
    ev(6, "tool_start", {"tool": "search_documents", "arguments": {"query": "q"}}),
    ev(7, "tool_end", {"tool": "search_documents", "ok": True, "result_preview": "1 hit"}),
    ev(8, "citations", {"citations": [CITE]}),
    ev(9, "node_end", node="tools"),
    ev(10, "node_start", node="supervisor"),
    ev(11, "token", {"text": "Hello "}),
    ev(12, "token", {"text": "world"}),
    ev(13, "node_end", node="supervisor"),
    ev(14, "end", {"answer": "Hello world", "citations": [CITE]}, status="success"),
]


def test_ai_sdk_chunks_of_an_agent_run() -> None:
    enc = ChunkEncoder("r1", "th", "http://h/api/v1/documents/")
    chunks = enc.start() + [c for e in AGENT_RUN for c in enc.chunks(e)]
    types = [c["type"] for c in chunks]
    assert types[0] == "start" and chunks[0]["messageId"] == "r1" and types[-1] == "finish"
    assert types.count("start-step") == types.count("finish-step") == 3
    # Text sits inside a step, opened and closed once, with every delta on its id.
    start, end = types.index("text-start"), types.index("text-end")
    deltas = [c for c in chunks if c["type"] == "text-delta"]
    assert start < types.index("text-delta") < end < types.index("finish")
    assert {d["id"] for d in deltas} == {chunks[start]["id"]}
    assert "".join(d["delta"] for d in deltas) == "Hello world"
    tool_ids = {c["toolCallId"] for c in chunks if c["type"].startswith("tool-")}
    assert len(tool_ids) == 1
    sources = [c for c in chunks if c["type"] == "source-url"]
    assert len(sources) == 1  # the end repeats the citation: sent once
    assert sources[0]["url"] == "http://h/api/v1/documents/d1#page=2"
    assert chunks[-1]["finishReason"] == "stop"


def test_ai_sdk_answer_without_tokens_and_failures() -> None:
    enc = ChunkEncoder("r1", "th", "/")
    silent = enc.chunks(ev(1, "end", {"answer": "whole"}, status="success"))
    assert [c["type"] for c in silent] == [
        "start-step",
        "text-start",
        "text-delta",
        "text-end",
        "finish-step",
        "finish",
    ]
    enc = ChunkEncoder("r1", "th", "/")
    failed = [
        *enc.chunks(ev(1, "tool_start", {"tool": "x", "arguments": {}})),
        *enc.chunks(ev(2, "tool_end", {"tool": "x", "ok": False, "result_preview": "down"})),
        *enc.chunks(ev(3, "error", {"message": "boom"})),
        *enc.chunks(ev(4, "end", {}, status="error")),
    ]
    types = [c["type"] for c in failed]
    assert "tool-output-error" in types and {"type": "error", "errorText": "boom"} in failed
    assert failed[-1]["finishReason"] == "error"
    # A tool end without its start is dropped, not sent with an unknown id.
    assert ChunkEncoder("r", "t", "/").chunks(ev(1, "tool_end", {"tool": "y"})) == []


def test_openai_chunks_and_completion() -> None:
    done = Completion("r1", "th", "agent")
    first = done.first_chunk(with_usage=True)
    assert first["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert first["usage"] is None
    chunks = [c for e in AGENT_RUN[:-1] if (c := done.chunk(e, with_usage=False))]
    assert [c["choices"][0]["delta"]["content"] for c in chunks] == ["Hello ", "world"]
    end = AGENT_RUN[-1]
    assert done.failure(end) is None
    last = done.last_chunk(end, with_usage=False)
    assert last["choices"][0]["finish_reason"] == "stop" and last["citations"] == [CITE]
    whole = Completion("r1", "th", "agent").whole(end, {"total_tokens": 3})
    assert whole["choices"][0]["message"]["content"] == "Hello world"
    assert whole["id"] == "chatcmpl-r1" and whole["usage"] == {"total_tokens": 3}
    broken = Completion("r1", "th", "agent")
    broken.chunk(ev(1, "error", {"message": "model down"}), with_usage=False)
    assert broken.failure(ev(2, "end", {}, status="error")) == "model down"


def test_a2a_parse_both_shapes() -> None:
    v1 = parse_send(
        {
            "message": {"role": "ROLE_USER", "parts": [{"text": "hi"}], "contextId": "c1"},
            "configuration": {"returnImmediately": True},
        }
    )
    assert (v1.text, v1.context_id, v1.return_immediately) == ("hi", "c1", True)
    v03 = parse_send(
        {
            "message": {"kind": "message", "parts": [{"kind": "text", "text": "yo"}]},
            "configuration": {"blocking": False},
        }
    )
    assert (v03.text, v03.context_id, v03.return_immediately) == ("yo", None, True)
    for bad in (None, {}, {"message": {"parts": "x"}}, {"message": {"parts": [{"data": 1}]}}):
        with pytest.raises(RpcError):
            parse_send(bad)


def test_a2a_objects_in_each_version() -> None:
    task = TaskView("r1", "c1", "agent", state="completed", answer="ok", citations=[CITE])
    v1, v03 = Encoder("1.0"), Encoder("0.3")
    assert v1.task(task)["status"]["state"] == "TASK_STATE_COMPLETED"
    assert v1.task(task)["artifacts"][0]["parts"] == [
        {"text": "ok"},
        {"data": {"citations": [CITE]}, "mediaType": "application/json"},
    ]
    legacy = v03.task(task)
    assert legacy["kind"] == "task" and legacy["status"]["state"] == "completed"
    assert legacy["artifacts"][0]["parts"][0] == {"kind": "text", "text": "ok"}
    assert set(v1.status_update(task)) == {"statusUpdate"}
    assert v03.status_update(task)["final"] is True
    task.state = "input-required"
    assert v1.status(task)["state"] == "TASK_STATE_INPUT_REQUIRED"
    failed = TaskView("r2", "c1", "agent", state="failed", error="boom")
    assert v1.status(failed)["message"]["parts"] == [{"text": "boom"}]
    assert v1.status(failed)["message"]["role"] == "ROLE_AGENT"
