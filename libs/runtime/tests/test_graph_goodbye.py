"""Only connections to FalkorDB close without Bolt GOODBYE (stores/knowledge_graph.py says why).

A real Neo4j gets the driver's own close; FalkorDB jams the descriptor a GOODBYE leaves behind.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from neo4j._sync.io._bolt._base import Bolt

from agentbus.runtime.engines import GraphEngine
from agentbus.runtime.settings import Settings
from agentbus.runtime.stores.knowledge_graph import (
    closes_without_goodbye,
    mark_falkordb,
    sync_driver,
)


@dataclass
class Connection:
    unresolved_address: tuple[str, int]


def test_only_marked_servers_close_without_goodbye() -> None:
    mark_falkordb("bolt://127.0.0.1:17001")
    assert closes_without_goodbye(Connection(("127.0.0.1", 17001)))
    assert not closes_without_goodbye(Connection(("127.0.0.1", 17002)))
    assert not closes_without_goodbye(Connection(("neo4j.example", 7687)))
    mark_falkordb("bolt://graph.internal")  # no port: Bolt's 7687
    assert closes_without_goodbye(Connection(("graph.internal", 7687)))


def test_the_embedded_graph_is_named_falkordb_and_production_is_neo4j(
    graph_engine: GraphEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AGENTBUS_GRAPH_SERVER", raising=False)
    assert Settings().graph_server == "neo4j"
    assert graph_engine.env()["AGENTBUS_GRAPH_SERVER"] == "falkordb"


def spy_goodbyes(monkeypatch: pytest.MonkeyPatch, goodbyes: list[Any]) -> None:
    """Record each GOODBYE a sync connection sends (every Bolt version has its own method)."""
    classes, seen = [Bolt], []
    while classes:
        cls = classes.pop()
        classes.extend(cls.__subclasses__())
        if "goodbye" in vars(cls):
            seen.append(cls)
            said = vars(cls)["goodbye"]

            def goodbye(self: Any, *args: Any, _said: Any = said, **kwargs: Any) -> Any:
                goodbyes.append(self.unresolved_address)
                return _said(self, *args, **kwargs)

            monkeypatch.setattr(cls, "goodbye", goodbye)
    assert len(seen) > 1


def test_a_falkordb_driver_says_no_goodbye(
    graph_engine: GraphEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    goodbyes: list[Any] = []
    spy_goodbyes(monkeypatch, goodbyes)
    with sync_driver(graph_engine.url, falkordb=True) as driver:
        driver.execute_query("RETURN 1")
    assert goodbyes == []
