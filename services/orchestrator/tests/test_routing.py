"""Which specialist the supervisor hands a question to, with the offline model (`local/extractive`,
what `make run` and the tests use): the hand-off tools' descriptions decide it, so they are
checked here against questions users ask, without starting a run."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from agentbus.local_models.provider import get_chat
from agentbus.orchestrator.supervisor import SPECIALISTS

QUALITY = Path(__file__).resolve().parents[3] / "bench/answer_quality/questions.yaml"

ROUTES = {
    "How do we roll back a release when a deployment goes wrong?": ["insights"],
    "How do I roll back a release?": ["insights"],
    "How do I restore a database from a snapshot?": ["insights"],
    "When are the rooftop hives inspected?": ["insights"],
    "Which anomaly alerts were raised recently?": ["insights"],
    "Who owns the service in the rollback runbook?": ["insights"],
    "who knows Rust?": ["resource_planner"],
    "who owns the payments service?": ["resource_planner"],
    "Prepare my 1:1 with Priya Nair": ["resource_planner"],
    "What is our deployment frequency?": ["delivery_metrics"],
    "what is our change failure rate?": ["delivery_metrics"],
    "How many incidents per day this month?": ["delivery_metrics"],
}


def route(question: str) -> list[str]:
    tools = [s.handoff_schema() for s in SPECIALISTS]
    reply = get_chat().reply(
        [{"role": "system", "content": "route"}, {"role": "user", "content": question}],
        tools=tools,
    )
    return [call.name.removeprefix("ask_") for call in reply.tool_calls]


@pytest.mark.parametrize(("question", "expected"), ROUTES.items())
def test_a_question_goes_to_its_specialist(question: str, expected: list[str]) -> None:
    assert route(question) == expected


def test_documentation_questions_stay_with_the_documents() -> None:
    """The answer-quality set is questions a manual answers: they must reach the documents (the
    concatenated tool descriptions once sent 18 of them to metrics or people)."""
    questions = [q["q"] for q in yaml.safe_load(QUALITY.read_text())]
    elsewhere = [q for q in questions if "insights" not in route(q)]
    assert len(elsewhere) <= 3, elsewhere


INSIGHTS_TOOLS = {
    "When are the rooftop hives inspected?": ["search_documents"],
    "How do we roll back a release when a deployment goes wrong?": ["search_documents"],
    "Who owns the service in the rollback runbook?": ["graph_augmented_answer"],
    "Which anomaly alerts were raised recently?": ["recent_alerts"],
}


def insights_tools(question: str) -> list[str]:
    from agentbus.orchestrator.specialist_tools import ALL_TOOLS

    spec = next(s for s in SPECIALISTS if s.name == "insights")
    reply = get_chat().reply(
        [{"role": "system", "content": spec.prompt}, {"role": "user", "content": question}],
        tools=[ALL_TOOLS[t].schema() for t in spec.tools],
    )
    return [call.name for call in reply.tool_calls]


@pytest.mark.parametrize(("question", "expected"), INSIGHTS_TOOLS.items())
def test_the_insights_specialist_picks_its_tool(question: str, expected: list[str]) -> None:
    assert insights_tools(question) == expected


def test_documentation_questions_are_searched_in_the_documents() -> None:
    """Inside the insights specialist the same questions go to search_documents (the
    graph-augmented tool, then a general search to the model, took 21 of 56)."""
    questions = [q["q"] for q in yaml.safe_load(QUALITY.read_text())]
    elsewhere = [q for q in questions if "search_documents" not in insights_tools(q)]
    assert len(elsewhere) <= 4, elsewhere
