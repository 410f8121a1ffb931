"""Task-aware model selection: the cheap classification of a question and its model group."""

from __future__ import annotations

import pytest

from agentbus.orchestrator.task_kind import classify


@pytest.mark.parametrize(
    ("question", "kind", "group"),
    [
        ("who knows Rust?", "lookup", "fast"),
        ("What is our deployment frequency?", "lookup", "fast"),
        ("How do I restore a database from a snapshot?", "lookup", "fast"),
        ("Why did the change failure rate get worse in March?", "analysis", "deep"),
        ("Are there any anomalies in deployments?", "analysis", "deep"),
        ("Prepare my 1:1 with Priya Nair", "planning", "deep"),
        ("Who should take the checkout migration?", "planning", "deep"),
        ("Give me a summary of engineering this month", "summary", "deep"),
        # Planning is checked first: a plan for a summary is still a plan.
        ("Plan the quarterly report", "planning", "deep"),
        # Whole words only: "download" is no "load", "reports" no "report".
        ("where do I download the client?", "lookup", "fast"),
    ],
)
def test_the_question_picks_task_and_group(question: str, kind: str, group: str) -> None:
    task = classify(question)
    assert (task.type, task.group) == (kind, group)
    assert task.reason.startswith(kind)


def test_the_reason_names_the_cue() -> None:
    assert classify("Why is checkout slower?").reason == "analysis: the question says 'why'"
    assert classify("").type == "lookup"
