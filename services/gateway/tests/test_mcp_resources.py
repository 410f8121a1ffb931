"""The pure parts of the MCP resources: URIs and joining overlapping passages."""

from __future__ import annotations

import pytest
from mcp.shared.exceptions import MCPError

from agentbus.gateway.mcp.resources import document_uri, join_passages, parse_uri, without_overlap


def test_uris_round_trip_and_refuse_anything_else() -> None:
    assert parse_uri(document_uri("d1")) == ("d1", None)
    assert parse_uri(document_uri("d1", 12)) == ("d1", 12)
    for uri in (
        "agentbus://documents/",
        "agentbus://documents/d1/pages/0",
        "agentbus://documents/d1/pages/x",
        "agentbus://documents/d1/",
        "agentbus://documents/../d1",
        "agentbus://documents/d1?page=2",
        "https://example.com/api/v1/documents/d1",
        "agentbus://documents/" + "a" * 129,
    ):
        with pytest.raises(MCPError):
            parse_uri(uri)


def test_the_chunkers_overlap_is_read_once() -> None:
    first = "Alpha beta gamma delta. Epsilon zeta eta theta iota kappa."
    second = "Epsilon zeta eta theta iota kappa. Lambda mu nu xi omicron."
    assert without_overlap(first, second) == "Lambda mu nu xi omicron."
    assert join_passages([first, second]) == f"{first}\n\nLambda mu nu xi omicron."


def test_passages_without_overlap_stay_whole() -> None:
    first = "The kiln fires stoneware at up to 1260 degrees."
    second = "Load shelves from the bottom up, two fingers apart."
    assert without_overlap(first, second) == second
    # A passage too short to probe, and one the previous passage holds entirely, stay as they are.
    assert without_overlap(first, "Short.") == "Short."
    assert without_overlap(first + " " + second, second) == second
    # A repeated phrase inside the previous passage is no overlap unless it runs to its end.
    third = "The kiln fires stoneware at up to 1260 degrees. Keep the lid shut."
    assert without_overlap(first + " Later text.", third) == third
    assert join_passages([]) == ""
