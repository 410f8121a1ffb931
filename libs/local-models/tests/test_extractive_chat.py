"""`local/extractive` through LiteLLM, exactly as a graph calls any model: real MiniLM, no mocks."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from agentbus.local_models.extractive import stream_pieces
from agentbus.local_models.provider import get_chat
from agentbus.local_models.text import candidates, clauses, passage_sentences, render_row, topic
from agentbus.runtime.llm.client import litellm

MODEL = "local/extractive"
# From litellm as `llm` set it up (importing litellm first would try to fetch the cost map).
NotFoundError = litellm.exceptions.NotFoundError
BadRequestError = litellm.exceptions.BadRequestError


def _tool(name: str, description: str, properties: dict[str, Any], required: list[str]) -> Any:
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": description,
            "parameters": {"type": "object", "properties": properties, "required": required},
        },
    }


SEARCH = _tool(
    "search_documents",
    "Search the organisation's documents, runbooks, guides, policies and procedures: how to do "
    "something, what a process or rule says.",
    {
        "query": {"type": "string", "description": "What to look for, in natural language"},
        "top_k": {"type": "integer", "default": 5, "description": "How many passages"},
    },
    ["query"],
)
PEOPLE = _tool(
    "find_people_by_skill",
    "Find people who know, use or have experience with a skill, programming language or "
    "technology: who knows Rust, who can help with Python.",
    {"skill": {"type": "string", "description": "The skill or language, e.g. Rust"}},
    ["skill"],
)
METRICS = _tool(
    "query_metrics",
    "Metrics and statistics: deployment frequency, lead time for changes, change failure rate, "
    "time to restore (DORA), usage, tokens, cost, number of runs, anomalies.",
    {
        "metric": {
            "type": "string",
            "enum": ["dora", "usage", "runs", "anomalies"],
            "description": "Which family of metrics: dora (deployment frequency, lead time for "
            "changes, change failure rate, time to restore), usage (tokens, cost), runs "
            "(number of runs, failures), anomalies (unusual spikes)",
        },
        "period": {"type": "string", "description": "Period, e.g. 30d"},
    },
    ["metric"],
)
OWNERS = _tool(
    "find_owners",
    "Find the owners, maintainers and main contributors of a repository or service: who owns "
    "or maintains it.",
    {"repository": {"type": "string", "description": "The repository or service name"}},
    ["repository"],
)
TOOLS = [SEARCH, PEOPLE, METRICS]

SEARCH_RESULT: dict[str, Any] = {
    "tenant_id": "t1",
    "query": "roll back",
    "mode": "hybrid",
    "hits": [
        {
            "chunk_id": "handbook:1",
            "document_id": "handbook",
            "title": "Employee handbook",
            "page": 2,
            "chunk_index": 1,
            "text": "Employees get 25 days of paid vacation per year. Vacation requests must be "
            "approved by your manager two weeks in advance.",
            "score": 0.41,
        },
        {
            "chunk_id": "runbook:3",
            "document_id": "runbook",
            "title": "Deployment runbook",
            "page": 4,
            "chunk_index": 3,
            "text": "Deployments go out every weekday at 10:00. To roll back a deployment, run "
            "deployctl rollback with the previous release tag. The release train is managed "
            "by the platform team.",
            "score": 0.38,
        },
    ],
    "took_ms": 3.2,
    "error": None,
}


def _user(text: str) -> list[dict[str, Any]]:
    return [{"role": "system", "content": "You are Agentbus."}, {"role": "user", "content": text}]


def _after_tools(question: str, *results: tuple[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The conversation a graph sends back after running the tools the model asked for."""
    calls = [
        {"id": f"call_{i}", "type": "function", "function": {"name": name, "arguments": "{}"}}
        for i, (name, _) in enumerate(results)
    ]
    tool_messages = [
        {"role": "tool", "tool_call_id": f"call_{i}", "name": name, "content": json.dumps(result)}
        for i, (name, result) in enumerate(results)
    ]
    return [
        *_user(question),
        {"role": "assistant", "content": None, "tool_calls": calls},
        *tool_messages,
    ]


def _calls(response: Any) -> list[tuple[str, dict[str, Any]]]:
    message = response.choices[0].message
    out = []
    for tc in message.tool_calls or []:
        assert tc.type == "function"
        assert tc.id.startswith("call_")
        out.append((tc.function.name, json.loads(tc.function.arguments)))
    return out


async def _stream(**kwargs: Any) -> tuple[str, list[tuple[str, dict[str, Any]]], Any, Any]:
    """Collect a streamed reply: text, tool calls, finish reason, usage of the final chunk."""
    stream = await litellm.acompletion(
        model=MODEL, stream=True, stream_options={"include_usage": True}, **kwargs
    )
    text, finish, usage = [], None, None
    calls: dict[int, dict[str, Any]] = {}
    async for chunk in stream:
        if getattr(chunk, "usage", None):
            usage = chunk.usage
        if not chunk.choices:
            continue
        choice = chunk.choices[0]
        finish = choice.finish_reason or finish
        if choice.delta.content:
            text.append(choice.delta.content)
        for tc in choice.delta.tool_calls or []:
            slot = calls.setdefault(tc.index, {"name": "", "arguments": ""})
            slot["name"] += tc.function.name or ""
            slot["arguments"] += tc.function.arguments or ""
    tool_calls = [(c["name"], json.loads(c["arguments"])) for _, c in sorted(calls.items())]
    return "".join(text), tool_calls, finish, usage


# -- tool choice -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("Who knows Rust?", [("find_people_by_skill", {"skill": "Rust"})]),
        ("who knows rust", [("find_people_by_skill", {"skill": "rust"})]),
        ("Which engineers know TypeScript?", [("find_people_by_skill", {"skill": "TypeScript"})]),
        ("What is our deployment frequency?", [("query_metrics", {"metric": "dora"})]),
        ("How many tokens did we use last week?", [("query_metrics", {"metric": "usage"})]),
        (
            "What is the vacation policy?",
            [("search_documents", {"query": "What is the vacation policy?", "top_k": 5})],
        ),
        # No tool describes rollbacks: a factual question goes to the general search tool.
        (
            "How do we roll back a failed deployment?",
            [
                (
                    "search_documents",
                    {"query": "How do we roll back a failed deployment?", "top_k": 5},
                )
            ],
        ),
        # Two questions in one: one call per part, each with the part as its arguments.
        (
            "Who knows Rust and how do we roll back?",
            [
                ("find_people_by_skill", {"skill": "Rust"}),
                ("search_documents", {"query": "how do we roll back?", "top_k": 5}),
            ],
        ),
    ],
)
async def test_tool_choice_picks_the_right_tool_with_arguments(
    question: str, expected: list[tuple[str, dict[str, Any]]]
) -> None:
    response = await litellm.acompletion(model=MODEL, messages=_user(question), tools=TOOLS)
    assert _calls(response) == expected
    assert response.choices[0].finish_reason == "tool_calls"
    assert response.choices[0].message.content is None
    assert response.usage.prompt_tokens > 0
    assert response.usage.completion_tokens > 0


async def test_names_and_identifiers_fill_string_parameters() -> None:
    tools = [*TOOLS, OWNERS]
    response = await litellm.acompletion(
        model=MODEL, messages=_user("Who owns payments-api?"), tools=tools
    )
    assert _calls(response) == [("find_owners", {"repository": "payments-api"})]
    response = await litellm.acompletion(
        model=MODEL, messages=_user("Who maintains the billing service?"), tools=tools
    )
    assert _calls(response) == [("find_owners", {"repository": "billing"})]


async def test_pleasantries_get_a_direct_answer_without_tools() -> None:
    response = await litellm.acompletion(model=MODEL, messages=_user("hello"), tools=TOOLS)
    assert _calls(response) == []
    assert response.choices[0].message.content == "I found nothing about hello."
    assert response.choices[0].finish_reason == "stop"


async def test_tool_choice_none_forced_and_required() -> None:
    response = await litellm.acompletion(
        model=MODEL, messages=_user("Who knows Rust?"), tools=TOOLS, tool_choice="none"
    )
    assert _calls(response) == []
    assert response.choices[0].message.content.startswith("I found nothing about")

    forced = {"type": "function", "function": {"name": "query_metrics"}}
    response = await litellm.acompletion(
        model=MODEL, messages=_user("How are the runs doing?"), tools=TOOLS, tool_choice=forced
    )
    assert _calls(response) == [("query_metrics", {"metric": "runs"})]  # the value named
    response = await litellm.acompletion(
        model=MODEL, messages=_user("Who knows Rust?"), tools=TOOLS, tool_choice=forced
    )
    [(name, arguments)] = _calls(response)  # forced, although the question is about people
    assert name == "query_metrics"
    assert arguments["metric"] in {"dora", "usage", "runs", "anomalies"}

    response = await litellm.acompletion(
        model=MODEL, messages=_user("hello"), tools=TOOLS, tool_choice="required"
    )
    assert len(_calls(response)) == 1

    response = await litellm.acompletion(
        model=MODEL,
        messages=_user("Who knows Rust and how do we roll back?"),
        tools=TOOLS,
        parallel_tool_calls=False,
    )
    assert _calls(response) == [("find_people_by_skill", {"skill": "Rust"})]


async def test_no_tool_call_once_the_tool_results_are_in() -> None:
    messages = _after_tools("Who knows Rust?", ("find_people_by_skill", {"rows": []}))
    response = await litellm.acompletion(model=MODEL, messages=messages, tools=TOOLS)
    assert _calls(response) == []
    assert response.choices[0].message.content == 'I found nothing about "Who knows Rust".'


# -- answers -----------------------------------------------------------------------------------


async def test_answer_from_search_results_cites_title_and_page() -> None:
    messages = _after_tools(
        "How do we roll back a failed deployment?", ("search_documents", SEARCH_RESULT)
    )
    response = await litellm.acompletion(model=MODEL, messages=messages, tools=TOOLS)
    answer = response.choices[0].message.content
    assert response.choices[0].finish_reason == "stop"
    assert answer.startswith(
        "To roll back a deployment, run deployctl rollback with the previous release tag. [1]"
    )
    assert "Sources:\n[1] Deployment runbook, page 4 — document runbook, chunk 3" in answer
    assert "handbook" not in answer.lower()
    assert response.usage.prompt_tokens > response.usage.completion_tokens > 0


async def test_found_nothing_when_the_context_is_unrelated() -> None:
    messages = _after_tools("What is the capital of Mongolia?", ("search_documents", SEARCH_RESULT))
    response = await litellm.acompletion(model=MODEL, messages=messages)
    assert response.choices[0].message.content == (
        "I found nothing about the capital of Mongolia. The passages I found do not answer it."
    )


async def test_rows_errors_and_several_tools() -> None:
    rows = {
        "name": "people_by_skill",
        "rows": [
            {"person": "Alice Smith", "skill": "Rust", "events": 2, "weight": 1.9},
            {"person": "Bob Jones", "skill": "Rust", "events": 1, "weight": 0.42},
        ],
    }
    error = {"error": "analytics is not available (no service answers agentbus.v1.analytics.query)"}
    messages = _after_tools(
        "Who knows Rust and how do we roll back?",
        ("find_people_by_skill", rows),
        ("search_documents", SEARCH_RESULT),
        ("query_metrics", error),
    )
    answer = (await litellm.acompletion(model=MODEL, messages=messages)).choices[0].message.content
    # Rows are listed, each cited by the query that returned it; passages by their document.
    assert "- Alice Smith — skill Rust, events 2, weight 1.9 [2]\n" in answer
    assert "- Bob Jones — skill Rust, events 1, weight 0.42 [2]\n" in answer
    assert "run deployctl rollback with the previous release tag. [1]" in answer
    assert "The query_metrics tool reported an error: analytics is not available" in answer
    assert answer.endswith(
        "Sources:\n[1] Deployment runbook, page 4 — document runbook, chunk 3\n"
        "[2] find_people_by_skill: people_by_skill"
    )
    # A tool that says where its rows come from is cited by that line.
    messages = _after_tools(
        "Who knows Rust?",
        ("find_people_by_skill", {**rows, "source": "graph people_by_skill (USED)"}),
    )
    answer = (await litellm.acompletion(model=MODEL, messages=messages)).choices[0].message.content
    assert answer.endswith("[1]\n\nSources:\n[1] graph people_by_skill (USED)"), answer
    assert "source:" not in answer, answer

    messages = _after_tools("What is our deployment frequency?", ("query_metrics", error))
    answer = (await litellm.acompletion(model=MODEL, messages=messages)).choices[0].message.content
    assert answer.startswith("I found nothing about our deployment frequency.")
    assert "analytics is not available" in answer


async def test_context_in_a_system_message_and_content_parts() -> None:
    messages = [
        {
            "role": "system",
            "content": "You are Agentbus.\nContext:\n" + SEARCH_RESULT["hits"][0]["text"],
        },
        {
            "role": "user",
            "content": [{"type": "text", "text": "How many vacation days do we get?"}],
        },
    ]
    answer = (await litellm.acompletion(model=MODEL, messages=messages)).choices[0].message.content
    assert answer.startswith("Employees get 25 days of paid vacation per year. [1]")
    assert "[1] context (tool result)" in answer


# -- the newcomer's example (issue 20): whole sentences, only the sources used -------------------

NEWCOMER = Path(__file__).resolve().parents[3] / "tests" / "data" / "newcomer"
BEES_QUESTION = "how do bees keep warm during the cold season"


def _newcomer_hits(refs: bool) -> list[dict[str, Any]]:
    """The four documents as a search returns them (no relevance bar): the bee document in two
    chunks that overlap mid-sentence, as the ingest chunker cuts it, then the three others."""
    bees = (NEWCOMER / "overwintering-bees.md").read_text()
    cut = bees.index("## Food and moisture")
    overlap = bees.index("flight muscles")  # the next chunk repeats the tail of this one
    texts = [
        ("overwintering-bees", "Overwintering honey bee colonies", 0, bees[:cut]),
        ("overwintering-bees", "Overwintering honey bee colonies", 1, bees[overlap:]),
    ]
    for name, title in (
        ("sourdough", "sourdough"),
        ("tides", "Why there are two tides a day"),
        ("payments-rollback", "Payments service rollback runbook"),
    ):
        texts.append((name, title, 0, (NEWCOMER / f"{name}.md").read_text()))
    hits = []
    for doc, title, chunk, text in texts:
        hit: dict[str, Any] = {
            "document_id": doc,
            "title": title,
            "page": None,
            "chunk_index": chunk,
            "text": text,
        }
        if refs:  # the orchestrator numbers passages per document page
            hit["ref"] = 1 + [t[0] for t in texts].index(doc) - (doc != "overwintering-bees")
        hits.append(hit)
    return hits


def _sentences(answer: str) -> list[str]:
    return [s for s in re.split(r"(?<=\])\s+", answer.split("\n\nSources:", maxsplit=1)[0]) if s]


@pytest.mark.parametrize("refs", [True, False])
async def test_the_bee_question_is_answered_in_whole_sentences_from_one_source(refs: bool) -> None:
    messages = _after_tools(BEES_QUESTION, ("search_documents", {"hits": _newcomer_hits(refs)}))
    answer = (await litellm.acompletion(model=MODEL, messages=messages)).choices[0].message.content
    sentences = _sentences(answer)
    assert 2 <= len(sentences) <= 3, answer
    for sentence in sentences:
        # A whole sentence: capital first, full stop before its marker, no heading or bullet.
        assert re.fullmatch(r"[A-Z][^#\n]*[.!?] \[1\]", sentence), sentence
    assert "shiver their flight muscles to generate heat" in answer
    assert re.findall(r"\[(\d+)\]", answer.split("Sources:")[0]) == ["1"] * len(sentences)
    for other in ("sourdough", "tide", "rollback", "Payments"):
        assert other not in answer
    if refs:  # the orchestrator lists the sources: none in the text
        assert "Sources:" not in answer
    else:
        assert answer.endswith(
            "\n\nSources:\n[1] Overwintering honey bee colonies — document overwintering-bees,"
            " chunks 0, 1"
        )


async def test_passages_that_do_not_answer_are_said_plainly() -> None:
    hits = _newcomer_hits(refs=True)[2:]  # sourdough, tides, rollback
    messages = _after_tools(BEES_QUESTION, ("search_documents", {"hits": hits}))
    answer = (await litellm.acompletion(model=MODEL, messages=messages)).choices[0].message.content
    assert answer == (
        'I found nothing about "how do bees keep warm during the cold season". '
        "The passages I found do not answer it."
    )


async def test_a_ref_from_the_caller_is_kept_and_other_sources_follow_it() -> None:
    hit = {**SEARCH_RESULT["hits"][1], "ref": 7}
    notes = "The release captain approves every rollback of a failed deployment."
    messages = _after_tools(
        "How do we roll back a failed deployment and who approves a rollback?",
        ("search_documents", {"hits": [hit]}),
        ("team_notes", {"rows": []}),
    )
    messages.append({"role": "system", "name": "context", "content": notes})
    answer = (await litellm.acompletion(model=MODEL, messages=messages)).choices[0].message.content
    assert "run deployctl rollback with the previous release tag. [7]" in answer
    assert "[8]" in answer and answer.endswith("Sources:\n[8] context (tool result)")


def test_passage_sentences_leave_out_headings_titles_and_fragments() -> None:
    text = (
        "shiver their flight muscles. Bees take turns\nin the warm centre.\n\n"
        "# Heading\n\nRolling back a release\n\nDatabase backups. Every database is backed up"
        "\nnightly.\n\nTitle\n=====\n\n```\ncode line here.\n```\n| a | table row. |\n"
        "- Fit a **mouse guard** and [narrow](http://x) the entrance\n"
        "* However, keep a little top ventilation.\n\nBeekeepers should"
    )
    assert passage_sentences(text) == [
        "Bees take turns in the warm centre.",
        "Every database is backed up nightly.",
        "Fit a mouse guard and narrow the entrance.",
        "Keep a little top ventilation.",
    ]


# -- streaming and usage -----------------------------------------------------------------------


async def test_streamed_tokens_join_to_the_answer_with_usage() -> None:
    messages = _after_tools(
        "How do we roll back a failed deployment?", ("search_documents", SEARCH_RESULT)
    )
    whole = await litellm.acompletion(model=MODEL, messages=messages)
    text, calls, finish, usage = await _stream(messages=messages)
    assert text == whole.choices[0].message.content
    assert calls == []
    assert finish == "stop"
    assert usage.prompt_tokens == whole.usage.prompt_tokens > 0
    assert usage.completion_tokens == whole.usage.completion_tokens > 0

    # Word-level chunks, each word with its leading whitespace.
    stream = await litellm.acompletion(model=MODEL, messages=messages, stream=True)
    pieces = [
        c.choices[0].delta.content async for c in stream if c.choices and c.choices[0].delta.content
    ]
    assert pieces == stream_pieces(whole.choices[0].message.content)
    assert len(pieces) > 10


async def test_streamed_tool_calls_with_usage() -> None:
    messages = _user("Who knows Rust and how do we roll back?")
    whole = await litellm.acompletion(model=MODEL, messages=messages, tools=TOOLS)
    text, calls, finish, usage = await _stream(messages=messages, tools=TOOLS)
    assert text == ""
    assert calls == _calls(whole)
    assert [name for name, _ in calls] == ["find_people_by_skill", "search_documents"]
    assert finish == "tool_calls"
    assert usage.prompt_tokens > 0
    assert usage.completion_tokens > 0


def test_sync_completion_and_streaming() -> None:
    response = litellm.completion(model=MODEL, messages=_user("Who knows Rust?"), tools=TOOLS)
    assert _calls(response) == [("find_people_by_skill", {"skill": "Rust"})]
    chunks = list(litellm.completion(model=MODEL, messages=_user("hello"), stream=True))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "I found nothing about hello."


# -- errors and the rest of the provider -------------------------------------------------------


async def test_unknown_local_model_and_bad_requests_are_clear_errors() -> None:
    with pytest.raises(
        NotFoundError, match=r"unknown local chat model 'local/gpt-9'.*local/extractive"
    ):
        await litellm.acompletion(model="local/gpt-9", messages=_user("hi"))
    with pytest.raises(NotFoundError, match="embedding model"):
        await litellm.acompletion(model="local/all-MiniLM-L6-v2", messages=_user("hi"))
    with pytest.raises(BadRequestError, match="at least one message"):
        await litellm.acompletion(model=MODEL, messages=[])
    with pytest.raises(BadRequestError, match="'nope', which is not in tools"):
        await litellm.acompletion(
            model=MODEL,
            messages=_user("hi"),
            tools=TOOLS,
            tool_choice={"type": "function", "function": {"name": "nope"}},
        )


async def test_embeddings_still_served_and_tool_texts_cached() -> None:
    response = await litellm.aembedding(model="local/all-MiniLM-L6-v2", input=["hello"])
    assert len(response.data[0]["embedding"]) == 384

    await litellm.acompletion(model=MODEL, messages=_user("Who knows Rust?"), tools=TOOLS)
    cached = dict(get_chat()._cache)
    await litellm.acompletion(model=MODEL, messages=_user("Who knows Go?"), tools=TOOLS)
    assert get_chat()._cache.keys() == cached.keys()  # no tool text embedded twice
    assert all(get_chat()._cache[k] is v for k, v in cached.items())


# -- the text helpers (no model) ---------------------------------------------------------------


def test_text_helpers() -> None:
    assert candidates("Who knows Rust?") == ["Rust"]
    assert candidates("Rust experts?") == ["Rust"]  # a first word counts only when alone
    assert candidates('Does "Project X" use C++ or node.js with Alice Smith?') == [
        "Project X", "C++", "node.js", "Alice Smith",
    ]  # fmt: skip
    assert candidates("who owns payments-api") == ["payments-api"]
    assert clauses("who knows Rust and how do we roll back?") == [
        "who knows Rust",
        "how do we roll back?",
    ]
    assert clauses("Who knows Rust and Go?") == ["Who knows Rust and Go?"]
    assert topic("What is the capital of Mongolia?") == "the capital of Mongolia"
    assert topic("How do we roll back?") == '"How do we roll back"'
    assert render_row({"person": "Alice Smith", "events": 2, "weight": 1.9}) == (
        "Alice Smith — events 2, weight 1.9"
    )
    assert render_row({"title": "Runbook", "pages": [1, 2], "last_at": 1_700_000_000}) == (
        "Runbook — pages 1, 2, last at 2023-11-14 22:13 UTC"
    )
    text = "One two\n\nthree [1]"
    assert "".join(stream_pieces(text)) == text
    assert stream_pieces(text) == ["One", " two", "\n\nthree", " [1]"]
