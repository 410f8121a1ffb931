"""The runtime is the chassis: it imports no service (issue 12). Services reach it the other
way, by entry point (agentbus.runtime.service_entry); this reads every runtime module's imports
and names any that point at a service package."""

from __future__ import annotations

import ast
from pathlib import Path

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
