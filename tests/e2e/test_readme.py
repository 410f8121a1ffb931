"""The README's quick start, run as written: every ```sh command of its "Quick start" section
against the session platform (which is what `make run` starts), with the answers checked.

A command added to the section without a check here fails the test, so the quick start cannot
drift from what works.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest

from agentbus.runtime.platform import Platform

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
SECTION = "## Quick start"


def quick_start_commands(readme: str) -> list[str]:
    """The commands of the ```sh blocks between the quick-start heading and the next heading."""
    start = readme.index(SECTION)
    end = readme.find("\n## ", start + len(SECTION))
    section = readme[start : end if end != -1 else len(readme)]
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", section, flags=re.DOTALL):
        for line in block.splitlines():
            command = re.sub(r"\s+#.*$", "", line).strip()  # a trailing comment is prose
            if command:
                commands.append(command)
    return commands


def check_demo(out: str) -> None:
    assert "agentbus demo: done" in out, out
    stored = re.search(r"analytics: (\d+) deployments stored \(the sample has (\d+)\)", out)
    assert stored and stored.group(1) == stored.group(2) and int(stored.group(1)) > 0, out
    assert "graph: Rust -> Priya Nair, Tomas Ortega" in out, out


def check_documents(out: str) -> None:
    # The answer comes from the sample runbook, cited, with its rollback command.
    assert "shipit rollback" in out, out
    sources = out.split("Sources:", 1)[-1]
    assert "Runbook: rolling back a deployment" in sources, out


def cites_its_rows(out: str) -> None:
    """Rows from the graph or analytics end with the number of the query that returned them,
    listed under Sources."""
    rows = re.findall(r"^- .* \[(\d+)\]$", out, flags=re.M)
    listed = re.findall(r"^\[(\d+)\] \S", out.split("Sources:", 1)[-1], flags=re.M)
    assert rows and set(rows) <= set(listed), out


def check_graph(out: str) -> None:
    assert "Priya Nair" in out and "Tomas Ortega" in out, out
    cites_its_rows(out)
    for not_rust in ("Mei Chen", "Jonas Berg", "Sofia Rossi", "Amara Okafor", "Lena Fischer"):
        assert not_rust not in out, out


def check_analytics(out: str) -> None:
    rows = dict(re.findall(r"^- (\S+) — .*?deployments per day ([\d.]+)", out, flags=re.M))
    assert {"checkout", "payments-api", "storefront", "inventory"} <= set(rows), out
    assert all(float(v) > 0 for v in rows.values()), out
    cites_its_rows(out)


def check_dora_api(out: str) -> None:
    body = json.loads(out)
    rows = [dict(zip(body["columns"], row, strict=True)) for row in body["rows"]]
    services = {r["service"]: r for r in rows}
    assert services["checkout"]["deployments"] > 0, body
    assert services["*"]["lead_time_hours_p50"] is not None, body
    assert services["*"]["time_to_restore_hours_p50"] is not None, body


def check_trace(out: str) -> None:
    assert out.startswith("trace "), out
    assert "POST /api/v1/chat/stream  [gateway]" in out and "[orchestrator]" in out, out


# command pattern -> check of its stdout; `make run` is the session platform itself.
CHECKS: list[tuple[str, Callable[[str], None] | None]] = [
    (r"^make run$", None),
    (r"agentbus demo$", check_demo),
    (r'agentbus ask ".*roll back.*"$', check_documents),
    (r'agentbus ask ".*Rust.*"$', check_graph),
    (r'agentbus ask ".*deployment frequency.*"$', check_analytics),
    (r"^curl .*/api/v1/analytics/dora", check_dora_api),
    (r"agentbus traces --last$", check_trace),
]


def _check_of(command: str) -> tuple[bool, Callable[[str], None] | None]:
    for pattern, check in CHECKS:
        if re.search(pattern, command):
            return True, check
    return False, None


def _run(command: str, platform: Platform) -> subprocess.CompletedProcess[str]:
    # As typed in a checkout whose platform runs from var/ on port 8080: here the session
    # platform's data dir and gateway stand in for both.
    gateway = platform.gateway_url.removeprefix("http://")
    command = command.replace("localhost:8080", gateway).replace("var/", f"{platform.data_dir}/")
    command = command.replace(".venv/bin/agentbus", f"{sys.executable} -m agentbus.runtime.cli")
    env = {**os.environ, "AGENTBUS_DATA_DIR": str(platform.data_dir)}
    try:
        return subprocess.run(
            ["bash", "-c", command],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=420,
        )
    except subprocess.TimeoutExpired as exc:  # what it printed so far says where it stuck
        pytest.fail(f"{command} did not finish:\nstdout:\n{exc.stdout!r}\nstderr:\n{exc.stderr!r}")


def test_the_quick_start_section_is_found_and_every_command_has_a_check() -> None:
    commands = quick_start_commands((ROOT / "README.md").read_text())
    assert commands[0] == "make run", commands
    unchecked = [c for c in commands if not _check_of(c)[0]]
    assert not unchecked, f"README quick-start commands without a check here: {unchecked}"
    assert len(commands) >= 7, commands


def test_readme_quick_start_runs_as_written(platform: Platform) -> None:
    for command in quick_start_commands((ROOT / "README.md").read_text()):
        _, check = _check_of(command)
        if command == "make run":
            continue  # the session platform is what `make run` starts
        done = _run(command, platform)
        assert done.returncode == 0, f"{command}\nstdout:\n{done.stdout}\nstderr:\n{done.stderr}"
        if check is not None:
            check(done.stdout)


@pytest.mark.timeout(420)
def test_demo_twice_doubles_nothing_and_remove_takes_it_out(platform: Platform) -> None:
    """Runs after the quick start: the sample is loaded once already."""
    again = _run(".venv/bin/agentbus demo", platform)
    assert again.returncode == 0, again.stderr
    check_demo(again.stdout)  # the same deployment count as the sample, not twice it
    assert "already on the bus" in again.stdout or "events published" in again.stdout
    # Each person's commit count is the sample's, not twice it. The graph projects events
    # asynchronously, so a busy suite may see it still catching up: ask until it settles.
    expected = _rust_commits(platform.data_dir)
    counts: dict[str, int] = {}
    for _ in range(30):
        rust = _run('.venv/bin/agentbus ask "who knows Rust?"', platform)
        found = re.findall(r"^- (.+?) — skill Rust, events (\d+)", rust.stdout, flags=re.M)
        counts = {name: int(n) for name, n in found}
        if counts == expected or any(counts.get(k, 0) > v for k, v in expected.items()):
            break
        time.sleep(2)
    assert set(counts) == {"Priya Nair", "Tomas Ortega"}, rust.stdout
    assert counts == expected, (counts, expected)

    removed = _run(".venv/bin/agentbus demo --remove", platform)
    assert removed.returncode == 0, removed.stderr
    assert removed.stdout.count(": deleted (") == 5, removed.stdout
    # Every sample event leaves analytics too (the DORA numbers no longer count them).
    gone = re.search(r"analytics: (\d+) sample events deleted", removed.stdout)
    assert gone and int(gone.group(1)) == _sample_size(platform.data_dir), removed.stdout
    search = _run('.venv/bin/agentbus search "shipit rollback" -k 3', platform)
    assert "Runbook: rolling back" not in search.stdout, search.stdout
    rust = _run('.venv/bin/agentbus ask "who knows Rust?"', platform)
    assert "Priya Nair" not in rust.stdout, rust.stdout


@pytest.mark.timeout(540)  # the duplicate window after --remove, then a whole reload
def test_reload_after_remove_brings_everything_back(platform: Platform) -> None:
    # And back again: a reload after --remove is not swallowed by the bus's duplicate window.
    back = _run(".venv/bin/agentbus demo", platform)
    assert back.returncode == 0, back.stderr
    check_demo(back.stdout)
    assert back.stdout.count(": indexed (") == 5, back.stdout


def _sample_size(data_dir: Path) -> int:
    from agentbus.runtime.demo import Anchor, default_samples_dir, load_org
    from agentbus.runtime.sample_events import generate

    anchor = json.loads((data_dir / "demo" / "dev.json").read_text())
    end = Anchor(datetime.fromisoformat(anchor["end"])).end
    return len(generate(load_org(default_samples_dir()), "dev", end).events)


def _rust_commits(data_dir: Path) -> dict[str, int]:
    """Commits touching .rs files per person, from the generator and quarter the demo used."""
    from agentbus.runtime.demo import Anchor, default_samples_dir, load_org
    from agentbus.runtime.sample_events import generate

    anchor = json.loads((data_dir / "demo" / "dev.json").read_text())
    sample = generate(
        load_org(default_samples_dir()), "dev", Anchor(datetime.fromisoformat(anchor["end"])).end
    )
    counts: dict[str, int] = {}
    for event in sample.events:
        if event.type == "commit" and any(f.endswith(".rs") for f in event.data["files"]):
            name = event.data["author"]["name"]
            counts[name] = counts.get(name, 0) + 1
    return counts


def test_bad_sample_directory_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "org.json").write_text('{"name": "x"}')
    done = subprocess.run(
        [sys.executable, "-m", "agentbus.runtime.cli", "demo", "--samples", str(tmp_path)],
        env={**os.environ, "AGENTBUS_DATA_DIR": str(tmp_path / "var")},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "is not a valid sample organisation" in done.stderr, done.stderr
