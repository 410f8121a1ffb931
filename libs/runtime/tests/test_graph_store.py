"""Values sent to the graph as Cypher literals (`inline_parameters`), against the real server.

FalkorDB's Bolt parameters overflow a 4 KB stack buffer and are not escaped (see
agentbus.runtime.stores.knowledge_graph), so every value we send goes through `cypher_literal`.
These
tests check that each kind of value reads back exactly from the embedded server, including the
shapes that crash or rewrite a parameterised query, and that the server is still up after them.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import pytest
from neo4j import Driver

from agentbus.runtime.engines import GraphEngine
from agentbus.runtime.stores.knowledge_graph import cypher_literal, inline_parameters, sync_driver

TRICKY_STRINGS = [
    "",
    "it's",
    "x' t='victim",  # read as a second parameter when FalkorDB splices it into CYPHER ...
    "ends with a backslash \\",
    "back\\slash and \\' and \\n written out",
    'double "quotes"',
    "new\nline, tab\t, return\r",
    "\\u00fc stays six characters",
    "ünïcödé, 中文, emoji 😀, \u2028 separator, \x01 control",
    "$t and `ticks` inside",
    "a" * 5000,  # one string past the 4096-byte buffer
]


@pytest.fixture(scope="module")
def driver(graph_engine: GraphEngine) -> Iterator[Driver]:
    with sync_driver(graph_engine.url) as drv:
        yield drv


def _value(driver: Driver, value: Any) -> Any:
    records, _, _ = driver.execute_query(inline_parameters("RETURN $v AS v", {"v": value}))
    return records[0]["v"]


@pytest.mark.parametrize("text", TRICKY_STRINGS)
def test_strings_read_back_exactly(driver: Driver, graph_engine: GraphEngine, text: str) -> None:
    assert _value(driver, text) == text
    assert graph_engine.is_running()


@pytest.mark.parametrize(
    "value",
    [None, True, False, 0, -1, 2**63 - 1, -(2**63), 1.0, -0.5, 1e-9, 0.1234567891, 1e16, 1.5e-300],
)
def test_scalars_read_back_exactly(driver: Driver, value: Any) -> None:
    got = _value(driver, value)
    assert got == value and type(got) is type(value)


def test_nested_lists_and_maps_read_back(driver: Driver) -> None:
    value = {
        "rows": [{"key": k, "weight": 0.1 * i, "page": None} for i, k in enumerate(TRICKY_STRINGS)],
        "odd key": [1, [2, "three"]],
        "empty": {},
    }
    assert _value(driver, value) == value


def test_the_shape_that_crashed_the_server_is_written_and_the_server_lives(
    driver: Driver, graph_engine: GraphEngine
) -> None:
    # The entity list of one real manual page (postgresql-doc-15, pg_dumpall): 73 small maps,
    # ~6 KB once FalkorDB renders them, the first thing past its 4096-byte buffer.
    mentions = [
        {
            "chunk_index": i % 21,
            "key": f"entity {i}",
            "name": f"Entity {i}",
            "kind": "code",
            "count": 2,
        }
        for i in range(200)
    ]
    query = inline_parameters(
        "UNWIND $m AS m CREATE (:StoreProbe {t: $t, key: m.key, name: m.name})"
        " RETURN count(*) AS n",
        {"m": mentions, "t": "store-probe"},
    )
    records, _, _ = driver.execute_query(query)
    assert records[0]["n"] == 200
    records, _, _ = driver.execute_query(
        inline_parameters(
            "MATCH (p:StoreProbe {t: $t}) RETURN count(p) AS n, collect(p.name)[0] AS name",
            {"t": "store-probe"},
        )
    )
    assert records[0]["n"] == 200 and records[0]["name"].startswith("Entity ")
    assert graph_engine.is_running()


def test_parameter_references_are_replaced_outside_quotes_only() -> None:
    query = "MATCH (n {a: $a, ab: $ab}) WHERE n.s = '$a' AND n.`$a` = \"$ab\" RETURN $a"
    assert inline_parameters(query, {"a": "x", "ab": 2}) == (
        "MATCH (n {a: 'x', ab: 2}) WHERE n.s = '$a' AND n.`$a` = \"$ab\" RETURN 'x'"
    )


def test_literal_text() -> None:
    assert cypher_literal("it's \\") == "'it\\'s \\\\'"
    assert cypher_literal(1e-9) == "1e-9"
    assert cypher_literal(1e16) == "1e16"
    assert cypher_literal({"a b": [1, None]}) == "{`a b`: [1, null]}"
    assert cypher_literal("nul\x00") == "'nul\ufffd'"  # FalkorDB cannot hold NUL


@pytest.mark.parametrize(
    ("value", "error"),
    [
        (math.nan, ValueError),
        (math.inf, ValueError),
        (2**63, ValueError),
        (b"bytes", TypeError),
        ({1: "int key"}, TypeError),
        ({"`tick`": 1}, ValueError),
        (object(), TypeError),
    ],
)
def test_values_without_a_literal_are_refused(value: Any, error: type[Exception]) -> None:
    with pytest.raises(error, match="graph: "):
        cypher_literal(value)


def test_a_missing_parameter_is_named() -> None:
    with pytest.raises(KeyError, match=r"\$tenant"):
        inline_parameters("MATCH (n {t: $tenant}) RETURN n", {"t": "x"})
