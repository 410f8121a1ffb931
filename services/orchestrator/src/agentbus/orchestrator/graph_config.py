"""`langgraph.json` as the LangGraph CLI defines it, the part Agentbus serves.

Supported keys: `graphs` (`"name": "./file.py:var"`, `"package.module:var"` or
`{"path": ..., "description": ...}`), `env` (a mapping or the path of a `.env` file),
`dependencies` (local directories are put on `sys.path`; package names must be installed)
and `python_version` (checked against the running interpreter). Any other key is refused with
its name: a setting we would silently ignore would change what the user's deployment does.

The built-in assistants are entries of `builtin.json` next to this module; a user's config is
loaded on top of it and adds graphs or replaces built-in ones of the same name.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

BUILTIN_CONFIG = Path(__file__).with_name("builtin.json")

SUPPORTED_KEYS = ("graphs", "env", "dependencies", "python_version", "$schema")
GRAPH_KEYS = ("path", "description")


class GraphConfigError(ValueError):
    """The config cannot be served as written; the message names the file and the key."""


@dataclass(frozen=True)
class GraphSpec:
    """One graph: where its value lives (a file or a module) and which variable it is."""

    graph_id: str
    variable: str
    path: Path | None = None
    module: str | None = None
    description: str | None = None
    source: Path | None = None  # the config file that named it

    @property
    def where(self) -> str:
        return str(self.path) if self.path is not None else str(self.module)


@dataclass
class GraphConfig:
    path: Path | None
    graphs: dict[str, GraphSpec] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    sys_paths: list[Path] = field(default_factory=list)


def _spec(graph_id: str, value: Any, base: Path, source: Path) -> GraphSpec:
    where = f"{source}: graphs.{graph_id}"
    description: str | None = None
    if isinstance(value, dict):
        unknown = sorted(set(value) - set(GRAPH_KEYS))
        if unknown:
            raise GraphConfigError(
                f"{where}: key(s) {unknown} not supported (supported: {', '.join(GRAPH_KEYS)})"
            )
        if not isinstance(value.get("path"), str):
            raise GraphConfigError(f"{where}: 'path' must be a string like './graph.py:graph'")
        description = value.get("description")
        if description is not None and not isinstance(description, str):
            raise GraphConfigError(f"{where}: 'description' must be a string")
        value = value["path"]
    if not isinstance(value, str):
        raise GraphConfigError(
            f"{where}: expected './file.py:variable', 'module:variable' or an object with 'path'"
        )
    target, sep, variable = value.rpartition(":")
    if not sep or not target or not variable.isidentifier():
        raise GraphConfigError(f"{where}: {value!r} does not name a variable ('./file.py:graph')")
    if target.endswith(".py") or "/" in target or "\\" in target:
        path = (base / target).resolve()
        if not path.is_file():
            raise GraphConfigError(f"{where}: file {path} does not exist")
        return GraphSpec(graph_id, variable, path=path, description=description, source=source)
    if not all(part.isidentifier() for part in target.split(".")):
        raise GraphConfigError(f"{where}: {target!r} is neither a .py file nor a module name")
    return GraphSpec(graph_id, variable, module=target, description=description, source=source)


def _env(value: Any, base: Path, source: Path) -> dict[str, str]:
    if isinstance(value, dict):
        bad = [k for k, v in value.items() if not isinstance(v, str | int | float | bool)]
        if bad:
            raise GraphConfigError(f"{source}: env values must be scalars, not for {bad}")
        return {str(k): str(v) for k, v in value.items()}
    if isinstance(value, str):
        env_file = (base / value).resolve()
        if not env_file.is_file():
            raise GraphConfigError(f"{source}: env file {env_file} does not exist")
        return _dotenv(env_file)
    raise GraphConfigError(f"{source}: 'env' must be an object or the path of a .env file")


def _dotenv(path: Path) -> dict[str, str]:
    """KEY=VALUE lines, with `#` comments, `export ` prefixes and quotes as dotenv reads them."""
    out: dict[str, str] = {}
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        line = line.removeprefix("export ").strip()
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise GraphConfigError(f"{path}: line {number}: expected KEY=VALUE")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        elif " #" in value:
            value = value.split(" #", 1)[0].rstrip()
        out[key] = value
    return out


def _dependencies(value: Any, base: Path, source: Path) -> list[Path]:
    if not isinstance(value, list) or not all(isinstance(d, str) for d in value):
        raise GraphConfigError(f"{source}: 'dependencies' must be a list of strings")
    paths: list[Path] = []
    for dep in value:
        if dep.startswith((".", "/")):
            path = (base / dep).resolve()
            if not path.is_dir():
                raise GraphConfigError(f"{source}: dependency {dep!r}: {path} is not a directory")
            paths.append(path)
            continue
        # A package requirement: we never install at start-up, so it must be there already.
        name = dep.split("[")[0]
        for mark in "<>=!~; @":
            name = name.split(mark)[0]
        try:
            metadata.distribution(name.strip())
        except metadata.PackageNotFoundError:
            raise GraphConfigError(
                f"{source}: dependency {dep!r} is not installed in this environment; "
                "install it into the orchestrator's image or virtualenv"
            ) from None
    return paths


def _python_version(value: Any, source: Path) -> None:
    running = f"{sys.version_info.major}.{sys.version_info.minor}"
    if not isinstance(value, str):
        raise GraphConfigError(f"{source}: 'python_version' must be a string like '3.11'")
    if value != running:
        raise GraphConfigError(
            f"{source}: python_version {value} asked for, the orchestrator runs Python {running}"
        )


def parse(data: Any, source: Path) -> GraphConfig:
    if not isinstance(data, dict):
        raise GraphConfigError(f"{source}: expected a JSON object")
    unknown = sorted(set(data) - set(SUPPORTED_KEYS))
    if unknown:
        raise GraphConfigError(
            f"{source}: key(s) {unknown} not supported by Agentbus "
            f"(supported: graphs, env, dependencies, python_version)"
        )
    base = source.parent
    graphs = data.get("graphs")
    if not isinstance(graphs, dict) or not graphs:
        raise GraphConfigError(f"{source}: 'graphs' must be an object naming at least one graph")
    config = GraphConfig(path=source)
    for graph_id, value in graphs.items():
        if not isinstance(graph_id, str) or not graph_id or len(graph_id) > 128:
            raise GraphConfigError(f"{source}: graph name {graph_id!r} must be 1-128 characters")
        config.graphs[graph_id] = _spec(graph_id, value, base, source)
    if "env" in data:
        config.env = _env(data["env"], base, source)
    if "dependencies" in data:
        config.sys_paths = _dependencies(data["dependencies"], base, source)
    if "python_version" in data:
        _python_version(data["python_version"], source)
    return config


def read(path: Path) -> GraphConfig:
    path = path.expanduser().resolve()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise GraphConfigError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise GraphConfigError(f"{path}: not valid JSON: {exc}") from None
    return parse(data, path)


def load(user_config: Path | None) -> GraphConfig:
    """The built-in config with the user's on top (its graphs add to or replace built-in ones)."""
    config = read(BUILTIN_CONFIG)
    if user_config is None:
        return config
    user = read(user_config)
    config.path = user.path
    config.graphs.update(user.graphs)
    config.env.update(user.env)
    config.sys_paths.extend(user.sys_paths)
    return config


def apply_environment(config: GraphConfig) -> None:
    """Put the config's env and local dependencies in place before any graph is imported.

    Variables already set in the process environment win: the deployment's settings override
    the defaults a config file carries."""
    for key, value in config.env.items():
        os.environ.setdefault(key, value)
    for path in config.sys_paths:
        if str(path) not in sys.path:
            sys.path.insert(0, str(path))
