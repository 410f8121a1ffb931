"""Passages offered to the model and the citations of its answer (pure logic, no bus)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from agentbus.orchestrator.tools import (
    DEFAULT_MIN_RELEVANCE,
    _min_relevance,
    cited,
    link,
    number_passages,
    passages,
    relevant,
)


def _hit(doc: str, chunk: int, vector: float | None, page: int | None = None) -> dict[str, Any]:
    scores = {"vector": vector} if vector is not None else {"keyword": 0.1}
    return {
        "document_id": doc,
        "title": doc.title(),
        "page": page,
        "chunk_index": chunk,
        "text": f"text of {doc} {chunk}",
        "score": 0.03,
        "scores": scores,
    }


def test_hits_below_the_relevance_bar_are_not_offered() -> None:
    result = {"hits": [_hit("bees", 0, 0.76), _hit("tides", 0, 0.13), _hit("kw", 0, None)]}
    kept = relevant(result, 0.2)
    assert [h["document_id"] for h in kept["hits"]] == ["bees"]
    assert kept["below_relevance"] == 2
    assert relevant({"error": "no search"}, 0.2) == {"error": "no search"}


def test_passages_are_numbered_once_per_document_page_across_searches() -> None:
    first = {"hits": [_hit("bees", 0, 0.7), _hit("bees", 1, 0.6), _hit("pdf", 3, 0.5, page=2)]}
    number_passages(first, [])
    assert [h["ref"] for h in first["hits"]] == [1, 1, 2]
    second = {"hits": [_hit("pdf", 4, 0.5, page=2), _hit("pdf", 5, 0.4, page=3)]}
    number_passages(second, first["hits"])
    assert [h["ref"] for h in second["hits"]] == [2, 3]


def _turn(*results: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {"role": "user", "content": "earlier question"},
        {"role": "tool", "content": json.dumps({"hits": [{**_hit("old", 0, 0.9), "ref": 1}]})},
        {"role": "assistant", "content": "old answer [1]"},
        {"role": "user", "content": "how do bees keep warm?"},
        {"role": "assistant", "content": None, "tool_calls": []},
        *({"role": "tool", "content": json.dumps(r)} for r in results),
        {"role": "tool", "content": "not json"},
    ]


def test_only_the_cited_passages_of_this_turn_are_sources_each_once() -> None:
    result = {"hits": [_hit("bees", 0, 0.7), _hit("bees", 1, 0.6), _hit("tides", 0, 0.3)]}
    number_passages(result, [])
    offered = passages(_turn(result))
    assert [h["document_id"] for h in offered] == ["bees", "bees", "tides"]  # not the old turn
    answer = "Bees shiver to make heat. [1] The outer bees insulate. [1][9] See [1, 1]."
    assert cited(answer, offered) == [
        {
            "ref": 1,
            "document_id": "bees",
            "title": "Bees",
            "page": None,
            "chunk_index": 0,
            "chunks": [0, 1],
            "score": 0.03,
            "url": "/api/v1/documents/bees",
        }
    ]
    assert cited("I found nothing about bees.", offered) == []
    both = cited("Tides. [2] Bees. [1]", offered)
    assert [c["ref"] for c in both] == [2, 1]


def test_a_citation_links_to_the_source_url_or_the_document_and_its_page() -> None:
    assert link({"document_id": "d1", "page": 3}) == "/api/v1/documents/d1#page=3"
    web = {"document_id": "d2", "source": "https://example.org/guide.pdf", "page": 2}
    assert link(web) == "https://example.org/guide.pdf#page=2"
    assert link({"document_id": "d3", "source": "notes.md"}) == "/api/v1/documents/d3"


def test_the_relevance_bar_is_configurable_and_a_bad_value_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AGENTBUS_MIN_RELEVANCE", "0.35")
    assert _min_relevance() == 0.35
    monkeypatch.setenv("AGENTBUS_MIN_RELEVANCE", "")
    assert _min_relevance() == DEFAULT_MIN_RELEVANCE
    for bad in ("high", "2", "nan"):
        monkeypatch.setenv("AGENTBUS_MIN_RELEVANCE", bad)
        with pytest.raises(ValueError, match="AGENTBUS_MIN_RELEVANCE must be a cosine"):
            _min_relevance()
