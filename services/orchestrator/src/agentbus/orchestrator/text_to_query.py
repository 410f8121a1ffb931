"""Questions in plain language over the event data, as one SELECT over the analytics tables.

With the offline model the translation is rule-based: the question names what to count
(deployments, failed deployments, commits, incidents, events, runs, failed runs, tokens, cost,
tool calls), optionally what to group it by ("per service", "by person", "per day", ...), a
period ("last 2 weeks", "this month", "today"; 30 days when none) and a service ("for
checkout"). A model with SQL of its own passes `sql` instead. Either way the text goes to
analytics' `agentbus.v1.analytics.sql`, whose gate parses it, allow-lists tables and functions,
scopes every table to the tenant and bounds rows and time: nothing here is trusted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


class NotUnderstood(ValueError):
    """A question the rules cannot translate; the message says what they understand."""


@dataclass(frozen=True)
class Measure:
    table: str
    where: str
    expr: str
    label: str


# Longest phrases first: "failed deployments" before "deployments".
MEASURES: tuple[tuple[tuple[str, ...], Measure], ...] = (
    (
        ("failed deployments", "failed deploys", "failed releases", "deployment failures"),
        Measure("events", "kind = 'deployment' AND status = 'failed'", "count()", "failed"),
    ),
    (
        ("deployments", "deploys", "releases", "deployment", "deploy", "release"),
        Measure("events", "kind = 'deployment'", "count()", "deployments"),
    ),
    (("commits", "commit", "changes"), Measure("events", "kind = 'commit'", "count()", "commits")),
    (
        ("incidents", "incident", "outages", "outage"),
        Measure("events", "kind = 'incident' AND status = 'open'", "count()", "incidents"),
    ),
    (
        ("failed runs", "run failures", "errors"),
        Measure("runs", "status != 'success'", "count()", "failed_runs"),
    ),
    (("runs", "run", "conversations"), Measure("runs", "1 = 1", "count()", "runs")),
    (
        ("tokens", "token"),
        Measure("llm_usage", "1 = 1", "sum(input_tokens + output_tokens)", "tokens"),
    ),
    (
        ("cost", "spend", "spent", "dollars"),
        Measure("llm_usage", "1 = 1", "round(sum(cost_usd), 6)", "cost_usd"),
    ),
    (("tool calls", "tool call"), Measure("tool_calls", "1 = 1", "count()", "tool_calls")),
    (("events", "event", "activity"), Measure("events", "1 = 1", "count()", "events")),
)

_AUTHOR = "JSONExtractString(data, 'author', 'name')"
# (words after per/by/each, the column per table, whether it is time (ordered by time)).
DIMENSIONS: tuple[tuple[tuple[str, ...], dict[str, str], bool], ...] = (
    (("service", "services"), {"events": "service"}, False),
    (("repository", "repositories", "repo", "repos"), {"events": "service"}, False),
    (
        ("person", "people", "author", "authors", "engineer", "engineers", "developer"),
        {"events": _AUTHOR},
        False,
    ),
    (("team", "teams"), {"events": "JSONExtractString(data, 'team')"}, False),
    (
        ("day", "days", "daily"),
        {t: "toDate(ts)" for t in ("events", "runs", "llm_usage", "tool_calls")},
        True,
    ),
    (
        ("week", "weeks", "weekly"),
        {t: "toStartOfWeek(ts)" for t in ("events", "runs", "llm_usage", "tool_calls")},
        True,
    ),
    (
        ("month", "months", "monthly"),
        {t: "toStartOfMonth(ts)" for t in ("events", "runs", "llm_usage", "tool_calls")},
        True,
    ),
    (("source", "sources", "system"), {"events": "source"}, False),
    (("type", "types", "kind"), {"events": "type", "tool_calls": "tool"}, False),
    (("model", "models"), {"llm_usage": "model"}, False),
    (
        ("assistant", "assistants", "agent"),
        {"runs": "assistant_id", "llm_usage": "assistant_id"},
        False,
    ),
    (("tool", "tools"), {"tool_calls": "tool"}, False),
    (("status",), {"runs": "status", "events": "status"}, False),
)

_PERIOD = re.compile(
    r"\b(?:last|past|previous)\s+(\d{1,4})?\s*(hour|day|week|month)s?\b", re.IGNORECASE
)
_UNIT_DAYS = {"hour": 1 / 24, "day": 1, "week": 7, "month": 30}
_FOR = re.compile(r"\b(?:for|of|in|on)\s+(?:the\s+)?([a-z0-9][\w\-]*)(?:\s+service)?\b", re.I)
_NOT_A_SERVICE = frozenset(
    """the a an each every all our my last past this today yesterday week month day year per
    service services team teams person people""".split()  # noqa: SIM905
)


def quote(value: str) -> str:
    """A ClickHouse string literal (the gate re-parses it: a quote cannot end it early)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def period_days(question: str) -> float:
    text = question.lower()
    if "today" in text:
        return 1
    if "yesterday" in text:
        return 2
    if "this week" in text:
        return 7
    if "this month" in text:
        return 30
    if "this quarter" in text or "quarter" in text:
        return 91
    m = _PERIOD.search(text)
    if m:
        return int(m.group(1) or 1) * _UNIT_DAYS[m.group(2).lower()]
    return 30


def _has(text: str, phrase: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(phrase)}(?![\w-])", text) is not None


def translate(question: str, services: frozenset[str] = frozenset()) -> str:
    """The SELECT that answers `question`, or `NotUnderstood`. `services` are names a "for X"
    may name (else any identifier after "for"/"of" that is not a common word is taken)."""
    text = question.lower()
    measure = next((m for words, m in MEASURES if any(_has(text, w) for w in words)), None)
    if measure is None:
        raise NotUnderstood(
            "I can count deployments, failed deployments, commits, incidents, events, runs, "
            "failed runs, tokens, cost and tool calls, per service, person, team, day, week, "
            "month, source, type, model, assistant or tool, over a period"
        )
    group: str | None = None
    alias = "bucket"
    time_group = False
    by = r"\b(?:per|by|each|every|for each|across)\s+"
    for words, columns, is_time in DIMENSIONS:
        if any(re.search(rf"{by}{w}\b", text) for w in words) and measure.table in columns:
            group, alias, time_group = columns[measure.table], words[0], is_time
            break
    who = re.search(r"\bwho\b|\bwhich (?:people|engineers|person)\b", text)
    if group is None and who and measure.table == "events":
        group, alias = _AUTHOR, "person"
    days = period_days(question)
    where = [measure.where, f"ts >= now() - INTERVAL {max(1, round(days * 24))} HOUR"]
    if measure.table == "events":
        for m in _FOR.finditer(question):
            name = m.group(1).lower()
            if name in _NOT_A_SERVICE or name.isdigit():
                continue
            if services and name not in services:
                continue
            if any(_has(name, w) for words, _ in MEASURES for w in words):
                continue
            where.append(f"service = {quote(name)}")
            break
    condition = " AND ".join(w for w in where if w != "1 = 1")
    if group is None:
        return f"SELECT {measure.expr} AS {measure.label} FROM {measure.table} WHERE {condition}"
    order = alias if time_group else f"{measure.label} DESC, {alias}"
    return (
        f"SELECT {group} AS {alias}, {measure.expr} AS {measure.label} FROM {measure.table} "
        f"WHERE {condition} GROUP BY {alias} ORDER BY {order} LIMIT 50"
    )
