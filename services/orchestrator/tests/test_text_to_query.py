"""Rule-based text to SQL: each translation is a query analytics' gate accepts and scopes."""

from __future__ import annotations

import pytest

from agentbus.analytics.sql_guard import guard
from agentbus.orchestrator.text_to_query import NotUnderstood, quote, translate


@pytest.mark.parametrize(
    ("question", "parts"),
    [
        (
            "How many deployments per service in the last 2 weeks?",
            ["kind = 'deployment'", "INTERVAL 336 HOUR", "GROUP BY service"],
        ),
        ("how many commits by person this month", ["'author', 'name'", "GROUP BY person"]),
        ("failed deployments for checkout", ["status = 'failed'", "service = 'checkout'"]),
        ("incidents per day last 7 days", ["toDate(ts) AS day", "ORDER BY day"]),
        ("who made the most commits last week", ["GROUP BY person", "INTERVAL 168 HOUR"]),
        ("tokens by model today", ["FROM llm_usage", "GROUP BY model", "INTERVAL 24 HOUR"]),
        ("tool calls per tool", ["FROM tool_calls", "GROUP BY tool"]),
    ],
)
def test_translation_passes_the_gate(question: str, parts: list[str]) -> None:
    sql = translate(question)
    for part in parts:
        assert part in sql, sql
    guarded = guard(sql)
    assert "tenant_id = {tenant:String}" in guarded.shown


def test_a_name_cannot_break_out_of_its_literal() -> None:
    sql = translate("deployments for x' OR 1=1")
    assert "service = 'x'" in sql
    assert quote("a'b\\") == "'a\\'b\\\\'"
    guard(f"SELECT count() FROM events WHERE service = {quote(chr(39) + ' OR 1=1 --')}")


def test_an_unknown_question_says_what_it_understands() -> None:
    with pytest.raises(NotUnderstood, match="deployments"):
        translate("what is the meaning of life")
