"""`agentbus up` as a newcomer runs it (`make run`), Ctrl-C, detach/down, and bad configuration."""

from __future__ import annotations

import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import psutil
import pytest

from agentbus.runtime.engines import free_port
from agentbus.runtime.platform import read_state

pytestmark = pytest.mark.e2e

CLI = [sys.executable, "-m", "agentbus.runtime.cli"]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTBUS_")}
    env.update(extra)
    return env


def _processes_using(path: Path) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline", "environ"]):
        try:
            cmd = " ".join(proc.info["cmdline"] or [])
            env = proc.info["environ"] or {}
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        if str(path) in cmd or env.get("AGENTBUS_DATA_DIR") == str(path):
            found.append(proc)
    return found


def test_up_is_ready_then_ctrl_c_leaves_no_process(tmp_path: Path) -> None:
    data_dir = tmp_path / "var"
    port = free_port()
    up = subprocess.Popen(
        [*CLI, "up", "--timeout", "60"],
        env=_env(AGENTBUS_DATA_DIR=str(data_dir), AGENTBUS_GATEWAY_PORT=str(port)),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert up.stdout is not None
        ready_line = ""
        for line in up.stdout:
            if line.startswith("agentbus:"):
                ready_line = line
                break
        # The launcher's own 60 s bound is the requirement; it exits with an error past it.
        assert "ready in" in ready_line, ready_line
        assert f"http://127.0.0.1:{port}" in ready_line
        response = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=10)
        assert response.status_code == 200, response.text
        state = read_state(data_dir)
        assert state is not None and state.ready
        pids = list(state.pids.values())
        assert len(pids) >= 8  # five services and the engines' processes
        assert (data_dir / "logs" / "gateway.log").exists()

        up.send_signal(signal.SIGINT)  # what Ctrl-C in the terminal does
        rest, _ = up.communicate(timeout=90)
    finally:
        if up.poll() is None:
            up.kill()
    assert up.returncode == 0, rest
    assert "stopped" in rest
    assert [
        p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != "zombie"
    ] == []
    assert _processes_using(data_dir) == []
    assert read_state(data_dir) is None
    # Data persists: the engines' stores are still there for the next `up`.
    assert (data_dir / "postgres" / "PG_VERSION").exists() or any((data_dir / "postgres").iterdir())


def test_detach_status_down(tmp_path: Path) -> None:
    data_dir = tmp_path / "var"
    env = _env(AGENTBUS_DATA_DIR=str(data_dir), AGENTBUS_GATEWAY_PORT=str(free_port()))
    try:
        up = subprocess.run(
            [*CLI, "up", "--detach", "--timeout", "90"],
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert up.returncode == 0, up.stdout + up.stderr
        assert "ready" in up.stdout
        status = subprocess.run(
            [*CLI, "status"], env=env, capture_output=True, text=True, timeout=60
        )
        assert status.returncode == 0, status.stdout + status.stderr
        again = subprocess.run(
            [*CLI, "up", "--detach"], env=env, capture_output=True, text=True, timeout=60
        )
        assert again.returncode == 2
        assert "already running" in again.stderr
    finally:
        down = subprocess.run([*CLI, "down"], env=env, capture_output=True, text=True, timeout=120)
    assert down.returncode == 0, down.stdout + down.stderr
    assert _processes_using(data_dir) == []
    status = subprocess.run([*CLI, "status"], env=env, capture_output=True, text=True, timeout=60)
    assert status.returncode == 1
    assert "DOWN" in status.stdout


def _one_clear_line(stderr: str) -> str:
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


def test_unreachable_nats_fails_fast(tmp_path: Path) -> None:
    url = f"nats://127.0.0.1:{free_port()}"
    result = subprocess.run(
        [sys.executable, "-m", "agentbus.retrieval"],
        env=_env(AGENTBUS_NATS_URL=url, AGENTBUS_DATA_DIR=str(tmp_path)),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    line = _one_clear_line(result.stderr)
    # It fails instead of retrying for ever: the subprocess timeout above is the bound.
    assert line.startswith("agentbus-retrieval: cannot reach NATS at " + url), line


def test_gateway_port_in_use_fails_fast(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "agentbus.gateway"],
            env=_env(AGENTBUS_GATEWAY_PORT=str(port), AGENTBUS_DATA_DIR=str(tmp_path)),
            capture_output=True,
            text=True,
            timeout=60,
        )
        up = subprocess.run(
            [*CLI, "up"],
            env=_env(AGENTBUS_GATEWAY_PORT=str(port), AGENTBUS_DATA_DIR=str(tmp_path / "up")),
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 2
    assert _one_clear_line(result.stderr) == (
        f"agentbus-gateway: port {port} on 127.0.0.1 is already in use"
    )
    assert up.returncode == 2
    assert f"gateway port {port} on 127.0.0.1 is already in use" in _one_clear_line(up.stderr)
    assert _processes_using(tmp_path / "up") == []


def test_unwritable_data_dir_fails_fast(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    data_dir = blocker / "var"
    up = subprocess.run(
        [*CLI, "up"],
        env=_env(AGENTBUS_DATA_DIR=str(data_dir)),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert up.returncode == 2
    line = _one_clear_line(up.stderr)
    assert str(data_dir) in line and "not writable" in line
    svc = subprocess.run(
        [sys.executable, "-m", "agentbus.orchestrator"],
        env=_env(AGENTBUS_DATA_DIR=str(data_dir)),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert svc.returncode == 2
    assert "not writable" in _one_clear_line(svc.stderr)


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("AGENTBUS_GATEWAY_PORT", "eighty", "AGENTBUS_GATEWAY_PORT"),
        ("AGENTBUS_NATS_URL", "http://127.0.0.1:4222", "AGENTBUS_NATS_URL"),
        ("AGENTBUS_LOG_LEVEL", "LOUD", "AGENTBUS_LOG_LEVEL"),
    ],
)
def test_invalid_settings_are_one_line(
    tmp_path: Path, name: str, value: str, expected: str
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "agentbus.ingest"],
        env=_env(**{name: value, "AGENTBUS_DATA_DIR": str(tmp_path)}),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    line = _one_clear_line(result.stderr)
    assert line.startswith("agentbus-ingest: invalid configuration:") and expected in line


def test_up_with_the_sample_answers_the_quick_starts_question(tmp_path: Path) -> None:
    """`make run` is `agentbus up --sample`: once it says the sample is in, the README's graph
    question is answered from it, with the rows cited, and Ctrl-C still stops everything."""
    data_dir = tmp_path / "var"
    env = _env(AGENTBUS_DATA_DIR=str(data_dir), AGENTBUS_GATEWAY_PORT=str(free_port()))
    up = subprocess.Popen(
        [*CLI, "up", "--sample", "--timeout", "90"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    # Read in a thread: the launcher keeps printing while the test waits with a deadline.
    threading.Thread(
        target=lambda: [lines.put(line) for line in up.stdout or []], daemon=True
    ).start()
    seen: list[str] = []
    try:
        deadline = time.monotonic() + 420
        while not any("sample organisation is in tenant dev" in line for line in seen):
            assert time.monotonic() < deadline, "".join(seen)
            try:
                seen.append(lines.get(timeout=5))
            except queue.Empty:
                assert up.poll() is None, "".join(seen)
        assert not any("loading the sample failed" in line for line in seen), "".join(seen)
        ask = subprocess.run(
            [*CLI, "ask", "who knows Rust?"],
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert ask.returncode == 0, ask.stdout + ask.stderr
        assert "Priya Nair" in ask.stdout and "Tomas Ortega" in ask.stdout, ask.stdout
        assert re.search(r"^- .*Priya Nair.* \[\d+\]$", ask.stdout, flags=re.M), ask.stdout
        assert "Sources:" in ask.stdout, ask.stdout
        up.send_signal(signal.SIGINT)
        up.wait(timeout=90)
    finally:
        if up.poll() is None:
            up.kill()
    assert up.returncode == 0
    assert _processes_using(data_dir) == []
