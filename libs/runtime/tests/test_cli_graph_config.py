"""`agentbus up --config`: which langgraph.json the orchestrator is told to load."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from agentbus.runtime.cli import build_parser
from agentbus.runtime.cli.lifecycle import use_graph_config


def parse(*argv: str) -> object:
    return build_parser().parse_args(["up", *argv])


def test_explicit_config_becomes_an_absolute_env_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # setenv first, so the variable the code under test sets is undone afterwards too
    monkeypatch.setenv("AGENTBUS_LANGGRAPH_CONFIG", "")
    monkeypatch.delenv("AGENTBUS_LANGGRAPH_CONFIG")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mine.json").write_text("{}")
    assert use_graph_config(parse("--config", "mine.json")) is None  # type: ignore[arg-type]
    assert os.environ["AGENTBUS_LANGGRAPH_CONFIG"] == str(tmp_path / "mine.json")


def test_default_is_langgraph_json_when_present_else_builtin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # setenv first, so the variable the code under test sets is undone afterwards too
    monkeypatch.setenv("AGENTBUS_LANGGRAPH_CONFIG", "")
    monkeypatch.delenv("AGENTBUS_LANGGRAPH_CONFIG")
    monkeypatch.chdir(tmp_path)
    assert use_graph_config(parse()) is None  # type: ignore[arg-type]
    assert "AGENTBUS_LANGGRAPH_CONFIG" not in os.environ
    (tmp_path / "langgraph.json").write_text("{}")
    assert use_graph_config(parse()) is None  # type: ignore[arg-type]
    assert os.environ["AGENTBUS_LANGGRAPH_CONFIG"] == str(tmp_path / "langgraph.json")


def test_missing_config_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # setenv first, so the variable the code under test sets is undone afterwards too
    monkeypatch.setenv("AGENTBUS_LANGGRAPH_CONFIG", "")
    monkeypatch.delenv("AGENTBUS_LANGGRAPH_CONFIG")
    monkeypatch.chdir(tmp_path)
    problem = use_graph_config(parse("--config", "nope.json"))  # type: ignore[arg-type]
    assert problem == "graph config nope.json does not exist"
    assert "AGENTBUS_LANGGRAPH_CONFIG" not in os.environ
