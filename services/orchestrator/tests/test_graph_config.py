"""langgraph.json parsing and graph loading: what is served, and clear refusals."""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

import pytest
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.store.memory import InMemoryStore

from agentbus.orchestrator import graph_config, graphs
from agentbus.orchestrator.graph_config import GraphConfigError
from agentbus.orchestrator.graphs import GraphLoadError
from agentbus.orchestrator.tenant_store import TenantStore

USER_GRAPH = Path(__file__).with_name("user_graph")


def write(tmp_path: Path, config: dict[str, Any], files: dict[str, str] | None = None) -> Path:
    for name, text in (files or {}).items():
        (tmp_path / name).write_text(text)
    path = tmp_path / "langgraph.json"
    path.write_text(json.dumps(config))
    return path


GRAPH_PY = """
from typing import TypedDict
from langgraph.graph import StateGraph, START

class S(TypedDict):
    n: int

def inc(state: S) -> dict:
    return {"n": state["n"] + 1}

builder = StateGraph(S)
builder.add_node("inc", inc)
builder.add_edge(START, "inc")
graph = builder.compile()
not_a_graph = 42
"""


def test_builtin_config_names_the_builtin_graphs() -> None:
    config = graph_config.load(None)
    assert list(config.graphs) == ["agent", "echo", "steps"]
    assert config.graphs["agent"].module == "agentbus.orchestrator.assistants"
    assert config.graphs["agent"].description


def test_user_config_adds_and_replaces(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        {
            "graphs": {
                "mine": "./g.py:graph",
                "echo": {"path": "./g.py:graph", "description": "mine now"},
            }
        },
        {"g.py": GRAPH_PY},
    )
    config = graph_config.load(path)
    assert set(config.graphs) == {"agent", "echo", "steps", "mine"}
    assert config.graphs["echo"].path == (tmp_path / "g.py").resolve()
    assert config.graphs["echo"].description == "mine now"
    assert config.graphs["mine"].variable == "graph"


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (
            {"graphs": {"g": "./g.py:graph"}, "auth": {"path": "a.py:auth"}},
            "['auth'] not supported",
        ),
        ({"graphs": {"g": "./g.py:graph"}, "store": {}, "http": {}}, "['http', 'store']"),
        ({"graphs": {}}, "at least one graph"),
        ({"graphs": {"g": "./g.py"}}, "does not name a variable"),
        ({"graphs": {"g": "./missing.py:graph"}}, "does not exist"),
        ({"graphs": {"g": {"path": "./g.py:graph", "tags": []}}}, "['tags'] not supported"),
        ({"graphs": {"g": 3}}, "expected './file.py:variable'"),
        (
            {"graphs": {"g": "./g.py:graph"}, "dependencies": ["no-such-package-xyz"]},
            "not installed",
        ),
        ({"graphs": {"g": "./g.py:graph"}, "dependencies": ["./nowhere"]}, "not a directory"),
        ({"graphs": {"g": "./g.py:graph"}, "env": "./.env.missing"}, "does not exist"),
        ({"graphs": {"g": "./g.py:graph"}, "python_version": "2.7"}, "python_version 2.7"),
    ],
)
def test_unsupported_or_broken_configs_are_refused(
    tmp_path: Path, config: dict[str, Any], message: str
) -> None:
    path = write(tmp_path, config, {"g.py": GRAPH_PY})
    with pytest.raises(GraphConfigError) as err:
        graph_config.load(path)
    assert message in str(err.value)
    assert str(path) in str(err.value)


def test_not_json_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "langgraph.json"
    path.write_text("{graphs: ")
    with pytest.raises(GraphConfigError, match="not valid JSON"):
        graph_config.load(path)


def test_env_mapping_and_file_and_dependencies(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / ".env").write_text("# comment\nexport FROM_FILE='one'\nKEPT=from-file\n")
    (tmp_path / "pkg").mkdir()
    path = write(
        tmp_path,
        {
            "graphs": {"g": "./g.py:graph"},
            "env": ".env",
            "dependencies": ["./pkg", "langgraph"],
            "python_version": f"{sys.version_info.major}.{sys.version_info.minor}",
        },
        {"g.py": GRAPH_PY},
    )
    monkeypatch.setenv("KEPT", "from-process")
    monkeypatch.delenv("FROM_FILE", raising=False)
    monkeypatch.setattr(sys, "path", list(sys.path))
    config = graph_config.load(path)
    assert config.env == {"FROM_FILE": "one", "KEPT": "from-file"}
    graph_config.apply_environment(config)
    assert os.environ["FROM_FILE"] == "one"
    assert os.environ["KEPT"] == "from-process"  # the deployment's setting wins
    assert str((tmp_path / "pkg").resolve()) in sys.path


def test_import_failure_names_file_line_and_error(tmp_path: Path) -> None:
    broken = "import os\n\nvalue = 1 / 0\n"
    path = write(tmp_path, {"graphs": {"bad": "./bad.py:graph"}}, {"bad.py": broken})
    with pytest.raises(GraphLoadError) as err:
        graphs.load(graph_config.load(path), None, None)
    text = str(err.value)
    assert f"{(tmp_path / 'bad.py').resolve()}, line 3" in text
    assert "ZeroDivisionError" in text and "'bad'" in text


def test_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, {"graphs": {"bad": "./bad.py:graph"}}, {"bad.py": "x = 1\ndef (:\n"})
    with pytest.raises(GraphLoadError) as err:
        graphs.load(graph_config.load(path), None, None)
    assert "bad.py, line 2" in str(err.value) and "SyntaxError" in str(err.value)


def test_missing_variable_and_wrong_value_are_refused(tmp_path: Path) -> None:
    path = write(tmp_path, {"graphs": {"g": "./g.py:nope"}}, {"g.py": GRAPH_PY})
    with pytest.raises(GraphLoadError, match="has no variable 'nope'"):
        graphs.load(graph_config.load(path), None, None)
    path = write(tmp_path, {"graphs": {"g": "./g.py:not_a_graph"}}, {"g.py": GRAPH_PY})
    with pytest.raises(GraphLoadError, match="is a int, not a compiled graph"):
        graphs.load(graph_config.load(path), None, None)


async def test_graphs_run_with_the_injected_checkpointer_and_store(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    own = (
        GRAPH_PY
        + "\nfrom langgraph.checkpoint.memory import InMemorySaver\n"
        + "owned = builder.compile(checkpointer=InMemorySaver())\n"
        + "def factory(config):\n    return builder\n"
    )
    path = write(
        tmp_path,
        {"graphs": {"g": "./g.py:graph", "owned": "./g.py:owned", "f": "./g.py:factory"}},
        {"g.py": own},
    )
    saver, store = InMemorySaver(), InMemoryStore()
    with caplog.at_level(logging.WARNING, logger="agentbus.orchestrator.graphs"):
        hosted = graphs.load(graph_config.load(path), saver, store)
    warned = [r.getMessage() for r in caplog.records]
    assert any("'owned' brings its own checkpointer (InMemorySaver)" in m for m in warned)
    assert not any("'g' brings" in m for m in warned)
    assert hosted.hosted["f"].takes_config
    for graph_id in ("g", "owned", "f"):
        config = {"configurable": {"thread_id": f"acme:{graph_id}"}}
        async with hosted.open(graph_id, config, "acme") as graph:
            assert graph.checkpointer is saver
            assert isinstance(graph.store, TenantStore) and graph.store.tenant_id == "acme"
            assert graph.name == graph_id
            assert await graph.ainvoke({"n": 1}, config) == {"n": 2}
        assert (await saver.aget_tuple(config)) is not None  # type: ignore[arg-type]


async def test_tenant_store_isolates_namespaces() -> None:
    shared = InMemoryStore()
    acme, beta = TenantStore(shared, "acme"), TenantStore(shared, "beta")
    await acme.aput(("notes", "u1"), "k", {"v": 1})
    await beta.aput(("notes", "u1"), "k", {"v": 2})
    item = await acme.aget(("notes", "u1"), "k")
    assert item is not None and item.value == {"v": 1} and item.namespace == ("notes", "u1")
    assert [i.value for i in await beta.asearch(("notes",))] == [{"v": 2}]
    assert await acme.alist_namespaces() == [("notes", "u1")]
    assert await acme.alist_namespaces(prefix=("notes",), max_depth=1) == [("notes",)]
    assert await shared.alist_namespaces() == [("acme", "notes", "u1"), ("beta", "notes", "u1")]
    await acme.adelete(("notes", "u1"), "k")
    assert await acme.aget(("notes", "u1"), "k") is None
    assert await beta.aget(("notes", "u1"), "k") is not None


def test_sample_user_graph_config_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTES_GREETING", raising=False)
    monkeypatch.setattr(sys, "path", list(sys.path))
    config = graph_config.load(USER_GRAPH / "langgraph.json")
    graph_config.apply_environment(config)
    hosted = graphs.load(config, None, None)
    assert {"notes", "notes_factory", "notes_async"} <= set(hosted.ids())
    assert hosted.hosted["notes"].compiled is not None
    assert not hosted.hosted["notes_async"].takes_config
