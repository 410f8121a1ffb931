"""Pure logic of the RAG application's routes: settings merge and validation, history cursors
and questions. The routes themselves are tested end to end in tests/e2e/test_rag_*.py."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from fastapi import HTTPException
from fastapi.exceptions import RequestValidationError

from agentbus.gateway.routes.history import decode_cursor, encode_cursor, question_in, question_of
from agentbus.gateway.routes.pipeline import PipelinePatch, _merge
from agentbus.runtime.stores.pipeline_settings import PipelineSettings


def test_a_patch_keeps_what_it_leaves_out_and_knows_what_changes_vectors() -> None:
    current = PipelineSettings()
    merged = _merge(current, PipelinePatch.model_validate({"retrieval": {"top_k": 3}}))
    assert merged.retrieval.top_k == 3 and merged.chunking == current.chunking
    assert not merged.vectors_changed(current)
    smaller = _merge(merged, PipelinePatch.model_validate({"chunking": {"size": 100}}))
    assert smaller.chunking.overlap == current.chunking.overlap and smaller.vectors_changed(merged)


@pytest.mark.parametrize(
    "body",
    [
        {"chunking": {"size": 50, "overlap": 50}},
        {"chunking": {"size": 100000}},
        {"retrieval": {"threshold": -0.1}},
        {"embedding": {"model": "someone/else"}},
    ],
)
def test_bad_merged_settings_are_validation_errors(body: dict[str, object]) -> None:
    with pytest.raises(RequestValidationError):
        _merge(PipelineSettings(), PipelinePatch.model_validate(body))


def test_cursors_round_trip_and_garbage_is_a_422() -> None:
    at = datetime(2026, 12, 2, 13, 0, tzinfo=UTC)
    assert decode_cursor(encode_cursor(at, "run-1")) == (at, "run-1")
    for bad in ("not-a-cursor", "", "e30", encode_cursor(at, "r")[:-3]):
        with pytest.raises(HTTPException) as caught:
            decode_cursor(bad)
        assert caught.value.status_code == 422


def test_the_question_is_the_last_user_message_text() -> None:
    messages = [
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "answer"},
        {
            "type": "human",
            "content": [{"type": "text", "text": "sec"}, {"type": "text", "text": "ond"}],
        },
    ]
    assert question_of(messages) == "second"
    assert question_of([{"role": "system", "content": "x"}]) == ""


def test_a_langgraph_input_is_a_question_only_with_a_user_message() -> None:
    """The LangGraph API's runs join the history when question_in finds a question."""
    ask = {"messages": [{"role": "user", "content": "who knows Rust?"}]}
    assert question_in(ask) == "who knows Rust?"
    assert question_in({"messages": [["human", "pair"], ["ai", "reply"]]}) == "pair"
    assert question_in({"messages": ["a bare string is a human message"]}) != ""
    for not_a_question in (
        None,
        "text",
        {"steps": 2, "delay": 0.1},
        {"messages": "not a list"},
        {"messages": []},
        {"messages": [{"role": "assistant", "content": "only an answer"}]},
        {"messages": [{"role": "user", "content": "  "}]},
        {"messages": [{"role": "user", "content": {"odd": 1}}]},
    ):
        assert question_in(not_a_question) == "", not_a_question
