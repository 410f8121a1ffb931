"""What a finished run records for evaluations (pure logic over state values)."""

from __future__ import annotations

import json

from agentbus.contracts.telemetry import TEXT_LIMIT
from agentbus.orchestrator.recorded import answer_and_contexts, question_of


def test_question_is_the_last_human_message_of_the_input() -> None:
    run_input = {
        "messages": [
            {"role": "user", "content": "first"},
            {"role": "assistant", "content": "reply"},
            {"type": "human", "content": [{"type": "text", "text": "how do we roll back?"}]},
        ]
    }
    assert question_of(run_input) == "how do we roll back?"
    assert question_of(None) is None
    assert question_of({"steps": 3}) is None
    assert len(question_of({"messages": [{"role": "user", "content": "x" * 20_000}]}) or "") == (
        TEXT_LIMIT
    )


def test_answer_and_contexts_come_from_this_runs_turn() -> None:
    hits = {"hits": [{"text": "Run deployctl rollback."}, {"text": "Confirm in the dashboard."}]}
    values = {
        "messages": [
            {"role": "user", "content": "old question"},
            {"role": "tool", "content": json.dumps({"hits": [{"text": "old snippet"}]})},
            {"role": "assistant", "content": "old answer"},
            {"role": "user", "content": "how do we roll back?"},
            {"role": "assistant", "content": None, "tool_calls": [{"id": "1"}]},
            {"role": "tool", "content": json.dumps(hits)},
            {
                "role": "tool",
                "content": json.dumps({"columns": ["person", "skill"], "rows": [["Ann", "Rust"]]}),
            },
            {"role": "tool", "content": json.dumps({"error": "analytics is not available"})},
            {"role": "assistant", "content": "Run deployctl rollback [1]."},
        ]
    }
    answer, contexts = answer_and_contexts(values)
    assert answer == "Run deployctl rollback [1]."
    assert contexts == [
        "Run deployctl rollback.",
        "Confirm in the dashboard.",
        json.dumps({"person": "Ann", "skill": "Rust"}),
    ]


def test_no_final_answer_when_the_run_stopped_at_a_tool_call() -> None:
    values = {"messages": [{"role": "user", "content": "q"}, {"role": "ai", "tool_calls": [{}]}]}
    assert answer_and_contexts(values) == (None, [])
    assert answer_and_contexts({}) == (None, [])
    many = {
        "messages": [
            {"role": "user", "content": "q"},
            {
                "role": "tool",
                "content": json.dumps({"hits": [{"text": f"s{i}"} for i in range(30)]}),
            },
            {"role": "assistant", "content": "a"},
        ]
    }
    assert len(answer_and_contexts(many)[1]) == 20
