"""The runtime is the chassis: it imports no service (issue 12). Services reach it the other
way, by entry point (agentbus.runtime.service_entry); this reads every runtime module's imports
and names any that point at a service package."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from importlib.metadata import requires
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from agentbus.contracts import SERVICES
from agentbus.runtime.service_entry import service_entry

RUNTIME = Path(__file__).parents[1] / "src" / "agentbus" / "runtime"
SERVICE_PACKAGES = {f"agentbus.{name}" for name in SERVICES}


def service_imports(path: Path, root: Path = RUNTIME) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "import_module":
            names = [ast.unparse(node.args[0])] if node.args else []
        for name in names:
            if any(name == p or name.startswith(p + ".") for p in SERVICE_PACKAGES) or (
                "agentbus.{" in name
            ):
                found.append(f"{path.relative_to(root)}:{node.lineno}: {name}")
    return found


def test_the_runtime_imports_no_service() -> None:
    modules = sorted(RUNTIME.rglob("*.py"))
    assert len(modules) > 20
    assert [hit for path in modules for hit in service_imports(path)] == []


def test_the_check_sees_each_kind_of_import(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text(
        "import agentbus.gateway.app\n"
        "from agentbus.analytics.evals import command\n"
        "import importlib\n"
        "importlib.import_module(f'agentbus.{name}.app')\n"
        "from agentbus.contracts import SERVICES\n"
    )
    assert len(service_imports(probe, tmp_path)) == 3


def test_every_service_is_found_by_its_entry_point() -> None:
    for name in SERVICES:
        entry = service_entry(name)
        assert entry.name == name and entry.settings.__name__ == f"{name.capitalize()}Settings"


# The engines' drivers each service may leave out (the runtime's `postgres`, `vectors` and
# `graph` extras): analytics needs none, the orchestrator no graph or pgvector.
LEFT_OUT = {
    "analytics": ("asyncpg", "neo4j", "pgvector"),
    "orchestrator": ("neo4j", "pgvector"),
}


@pytest.mark.parametrize("service", sorted(LEFT_OUT))
def test_a_service_builds_without_the_drivers_of_engines_it_does_not_use(service: str) -> None:
    """In a fresh interpreter where importing those drivers fails, the service's app module
    imports and its Service is built: the chassis imports a driver only where it is used."""
    blocked = LEFT_OUT[service]
    script = (
        "import sys\n"
        f"for name in {blocked!r}:\n"
        "    sys.modules[name] = None  # `import name` now raises ImportError\n"
        "from agentbus.runtime.service_entry import service_entry\n"
        f"entry = service_entry({service!r})\n"
        "entry.build(entry.settings())\n"
        f"loaded = sorted(m for m in {blocked!r} if sys.modules.get(m) is not None)\n"
        "assert not loaded, loaded\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
        env={**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]


def test_the_runtime_asks_for_no_driver_unless_an_extra_is_chosen() -> None:
    base = [
        Requirement(r).name.lower()
        for r in requires("agentbus-runtime") or []
        if "extra ==" not in r
    ]
    assert not {"asyncpg", "neo4j", "pgvector"} & set(base), base
    analytics = [Requirement(r) for r in requires("agentbus-analytics") or []]
    runtime = next(r for r in analytics if r.name == "agentbus-runtime" and r.marker is None)
    assert not runtime.extras & {"postgres", "vectors", "graph"}, runtime
