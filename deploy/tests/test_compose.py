"""The docker compose stack, checked without Docker: structure, settings, pins, and the NATS
cluster overlay's command lines run for real against nats-server.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import json
import os
import re
import secrets
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import nats
import pytest
import yaml

from agentbus.contracts import SERVICES
from agentbus.contracts.permissions import all_users, inbox_prefix, password_env
from agentbus.runtime.provisioning import provision
from agentbus.runtime.settings import Settings

COMPOSE_DIR = Path(__file__).resolve().parents[1] / "compose"
BASE = COMPOSE_DIR / "compose.yaml"
CLUSTER = COMPOSE_DIR / "compose.nats-cluster.yaml"
ENV_EXAMPLE = COMPOSE_DIR / ".env.example"

# Containers whose image cannot run a health probe; dependents wait for `service_started`.
NO_HEALTHCHECK = {
    "otel-collector": "distroless image: no shell and no HTTP client to probe :13133 with",
}
# Settings a service may leave at their defaults in a container, and why.
SAFE_DEFAULTS = {
    "nats_creds": "user/password auth is used instead of a .creds file",
    "nats_connect_timeout_s": "3 s for the first connection; reconnects are unbounded",
    "health_timeout_s": "2 s per readiness check",
    "instance": "hostname:pid, and the container hostname is unique",
    "diagnostic_assistants": "off: a deployment serves no diagnostic assistant",
    "forwarded_allow_ips": "127.0.0.1: no proxy in front, so X-Forwarded-For is not believed",
    "documents_max_bytes": "10 GiB in the documents object store (the bucket's max_bytes)",
}
# The same, for settings only one service has.
SAFE_DEFAULTS_OF = {
    "ingest": {"pipeline_config": "the pipeline.yaml packaged with ingest; mount one to change it"},
    "orchestrator": {
        "models_config": "the models.yaml packaged with orchestrator; mount one to change it",
        "max_concurrent_runs": "32 runs per replica; scale out with replicas",
        "max_runs_per_tenant": "8 of a replica's runs per tenant",
        "run_timeout_s": "900 s per run",
        "run_timeouts": "no per-assistant time limits beyond run_timeout_s",
        "langgraph_config": "the built-in graphs; mount a langgraph.json to serve your own",
        "store_index_fields": "none: the store's semantic search is off until fields are named",
        "store_index_dims": "384, the dimensions of the default embed model",
        "trace_model_content": "on: prompts and answers in model-call spans (Langfuse, LangSmith)",
    },
    "gateway": {
        "dev_tenant": "off: a deployment makes its tenants itself (only agentbus up makes `dev`)",
        "max_streams_per_tenant": "1,000 open SSE streams per tenant and replica",
        "webhook_allowed_urls": "none: LangGraph run webhooks are refused until targets are listed",
        "max_documents_per_tenant": "10,000 documents per tenant",
        "max_stored_bytes_per_tenant": "10 GiB of uploads per tenant",
        "readiness_detail": "operator: public /readyz says only ready or not",
        "operator_token": "none: nobody sees /readyz's detail until one is set",
        "public_metrics": "on: Prometheus scrapes the gateway's port in compose",
        "public_docs": "on: the API docs at /docs",
    },
}

_VAR = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}|\$([A-Za-z_]\w*)")


def read_env_file(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's variable syntax: $$, ${X}, ${X-d}, ${X:-d}, ${X?e}, ${X:?e}."""

    def sub(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1) or match.group(4)
        op, arg = match.group(2), match.group(3) or ""
        have = env.get(name)
        empty = have is None or (have == "" and op is not None and op.startswith(":"))
        if op in ("-", ":-"):
            return arg if empty else str(have)
        if op in ("?", ":?"):
            if empty:
                raise KeyError(f"{name} is required: {arg}")
            return str(have)
        if have is None:
            raise KeyError(f"{name} is not set and has no default")
        return have

    return _VAR.sub(sub, value)


def resolve(node: Any, env: dict[str, str]) -> Any:
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, list):
        return [resolve(x, env) for x in node]
    if isinstance(node, dict):
        return {k: resolve(v, env) for k, v in node.items()}
    return node


def referenced(path: Path) -> set[str]:
    return {m.group(1) or m.group(4) for m in _VAR.finditer(path.read_text()) if m.group(0) != "$$"}


@pytest.fixture(scope="module")
def env() -> dict[str, str]:
    return read_env_file(ENV_EXAMPLE)


@pytest.fixture(scope="module")
def compose(env: dict[str, str]) -> dict[str, Any]:
    return dict(resolve(yaml.safe_load(BASE.read_text()), env))


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return dict(compose["services"])


def settings_class(service: str) -> type[Settings]:
    module = importlib.import_module(f"agentbus.{service}.settings")
    found = [
        obj
        for obj in vars(module).values()
        if inspect.isclass(obj) and issubclass(obj, Settings) and obj.__module__ == module.__name__
    ]
    assert len(found) == 1, found
    return found[0]


def env_names(cls: type[Settings]) -> dict[str, str]:
    prefix = str(cls.model_config.get("env_prefix", ""))
    return {name: f"{prefix}{name}".upper() for name in cls.model_fields}


def test_env_example_holds_every_variable_and_no_secret(env: dict[str, str]) -> None:
    used = referenced(BASE) | referenced(CLUSTER)
    assert used - env.keys() == set(), "referenced but not in .env.example"
    assert env.keys() - used - {"COMPOSE_PROJECT_NAME"} == set(), "unused in .env.example"
    for key, value in env.items():
        if key.endswith(("PASSWORD", "_KEY", "_TOKEN")):
            assert value.startswith("change-me"), f"{key} looks like a real secret"
    # No secret has a default in the compose files: a missing .env fails loudly.
    for path in (BASE, CLUSTER):
        for match in _VAR.finditer(path.read_text()):
            name, op = match.group(1), match.group(2)
            if name and name.endswith("PASSWORD"):
                assert op == ":?", (path.name, name)


def test_every_service_has_a_healthcheck(services: dict[str, dict[str, Any]]) -> None:
    assert NO_HEALTHCHECK.keys() <= services.keys()
    for name, svc in services.items():
        check = svc.get("healthcheck")
        if name in NO_HEALTHCHECK:
            assert check is None, f"{name} has a healthcheck now: drop it from NO_HEALTHCHECK"
            continue
        assert check and not check.get("disable"), name
        assert check["test"][0] in ("CMD", "CMD-SHELL") and len(check["test"]) > 1, name
        assert {"interval", "timeout", "retries", "start_period"} <= check.keys(), name


def test_depends_on_targets_exist_with_sound_conditions(
    services: dict[str, dict[str, Any]],
) -> None:
    for name, svc in services.items():
        deps = svc.get("depends_on", {})
        assert isinstance(deps, dict), f"{name}: use the long form with conditions"
        for target, spec in deps.items():
            assert target in services, (name, target)
            condition = spec["condition"]
            assert condition in ("service_healthy", "service_started"), (name, target)
            if condition == "service_healthy":
                assert "healthcheck" in services[target], (name, target)
            else:
                assert target in NO_HEALTHCHECK, f"{name} should wait for {target} to be healthy"


@pytest.mark.parametrize("service", SERVICES)
def test_service_gets_every_setting_it_reads(
    service: str, services: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    svc = services[service]
    environment = {k: str(v) for k, v in svc["environment"].items()}
    cls = settings_class(service)
    names = env_names(cls)
    safe = {**SAFE_DEFAULTS, **SAFE_DEFAULTS_OF.get(service, {})}
    assert safe.keys() <= names.keys(), "a whitelisted setting no longer exists"
    missing = {var for field, var in names.items() if var not in environment and field not in safe}
    assert not missing, f"{service} reads {sorted(missing)} but compose does not set them"
    assert "OTEL_EXPORTER_OTLP_ENDPOINT" in environment
    # The values are valid for the service's own Settings class.
    for key in [k for k in os.environ if k.startswith("AGENTBUS_")]:
        monkeypatch.delenv(key)
    for key, value in environment.items():
        monkeypatch.setenv(key, value)
    if "AGENTBUS_JWT_SECRET" in environment:
        # .env.example's secret is a published placeholder, refused at start-up (the next test);
        # an operator sets a random one, as its comment says.
        monkeypatch.setenv("AGENTBUS_JWT_SECRET", secrets.token_urlsafe(48))
    settings = cls(_env_file=None)
    assert settings.nats_user == service
    assert (
        svc["environment"]["AGENTBUS_NATS_PASSWORD"]
        == read_env_file(ENV_EXAMPLE)[password_env(service)]
    )


def test_the_example_jwt_secret_is_refused(
    services: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    from pydantic import ValidationError

    for key in [k for k in os.environ if k.startswith("AGENTBUS_")]:
        monkeypatch.delenv(key)
    for key, value in services["gateway"]["environment"].items():
        monkeypatch.setenv(key, str(value))
    with pytest.raises(ValidationError, match="published placeholder"):
        settings_class("gateway")(_env_file=None)


def test_connection_urls_point_at_compose_services(services: dict[str, dict[str, Any]]) -> None:
    for name in SERVICES:
        environment = services[name]["environment"]
        for key in (
            "AGENTBUS_NATS_URL",
            "AGENTBUS_POSTGRES_DSN",
            "AGENTBUS_GRAPH_URL",
            "AGENTBUS_CLICKHOUSE_DSN",
            "OTEL_EXPORTER_OTLP_ENDPOINT",
        ):
            host = urlsplit(environment[key]).hostname
            assert host in services, (name, key, host)


def test_images_are_pinned(services: dict[str, dict[str, Any]], env: dict[str, str]) -> None:
    cluster = resolve(yaml.safe_load(CLUSTER.read_text()), env)["services"]
    images = {n: s.get("image") for n, s in services.items()}
    images |= {n: s["image"] for n, s in cluster.items() if "image" in s}
    for name, image in images.items():
        assert image, f"{name} has no image"
        repo, _, tag = image.rpartition(":")
        assert repo and "/" not in tag, f"{name}: {image} has no tag"
        assert tag != "latest" and re.search(r"\d", tag), f"{name}: {image} is not pinned"
    for name in SERVICES:
        assert images[name] == f"agentbus/{name}:{env['AGENTBUS_VERSION']}"
        build = services[name]["build"]
        assert build["dockerfile"] == f"services/{name}/Dockerfile"
        assert (COMPOSE_DIR / build["context"] / build["dockerfile"]).is_file()


def test_nats_has_every_user_and_services_use_their_own(
    services: dict[str, dict[str, Any]],
) -> None:
    nats_svc = services["nats"]
    assert {password_env(u.user) for u in all_users()} <= nats_svc["environment"].keys()
    mounts = {m.split(":")[1]: m.split(":")[0] for m in nats_svc["volumes"]}
    conf = mounts["/etc/nats/nats-auth.conf"]
    assert (COMPOSE_DIR / conf).resolve() == COMPOSE_DIR.parent / "nats" / "nats-auth.conf"
    command = nats_svc["command"]
    assert command[command.index("-c") + 1] == "/etc/nats/nats-auth.conf"
    assert "-js" in command and mounts.get("/data")  # JetStream on a volume
    for name in SERVICES:
        assert services[name]["environment"]["AGENTBUS_NATS_USER"] == name


def test_services_are_hardened(services: dict[str, dict[str, Any]]) -> None:
    for name in SERVICES:
        svc = services[name]
        assert svc["read_only"] is True and "/tmp" in svc["tmpfs"], name
        assert svc["cap_drop"] == ["ALL"], name
        assert "no-new-privileges:true" in svc["security_opt"], name
        grace = int(str(svc["stop_grace_period"]).rstrip("s"))
        assert grace > float(svc["environment"]["AGENTBUS_SHUTDOWN_TIMEOUT_S"]), name
        data = svc["environment"]["AGENTBUS_DATA_DIR"]
        assert any(str(v).endswith(f":{data}") for v in svc["volumes"]), name
        for port in svc.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), (name, port)


def test_otel_collector_sends_traces_to_jaeger(services: dict[str, dict[str, Any]]) -> None:
    mounts = {m.split(":")[1]: m.split(":")[0] for m in services["otel-collector"]["volumes"]}
    config = yaml.safe_load((COMPOSE_DIR / mounts["/etc/otelcol-contrib/config.yaml"]).read_text())
    traces = config["service"]["pipelines"]["traces"]
    assert traces["receivers"] == ["otlp"]
    http_endpoint = config["receivers"]["otlp"]["protocols"]["http"]["endpoint"]
    assert http_endpoint.endswith(":4318")  # the services export OTLP/HTTP to 4318
    for exporter in traces["exporters"]:
        host = config["exporters"][exporter]["endpoint"].split(":")[0]
        assert host in services, exporter
    assert "health_check" in config["service"]["extensions"]
    for name in SERVICES:
        assert services[name]["environment"]["OTEL_EXPORTER_OTLP_ENDPOINT"].endswith(":4318")


# --- the cluster overlay, run for real ------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _local_command(command: list[str], ports: dict[str, dict[str, int]], data: Path) -> list[str]:
    """An overlay node's arguments with container hosts, ports and paths made local."""
    args = list(command)
    name = args[args.index("--name") + 1]
    args[args.index("-sd") + 1] = str(data / name)
    args[args.index("-m") + 1] = str(ports[name]["monitor"])
    args[args.index("--cluster") + 1] = f"nats://127.0.0.1:{ports[name]['cluster']}"
    routes = args[args.index("--routes") + 1].split(",")
    hosts = {"nats": "nats-1", "nats-2": "nats-2", "nats-3": "nats-3"}
    local = []
    for route in routes:
        host = urlsplit(route).hostname or ""
        local.append(f"nats://127.0.0.1:{ports[hosts[host]]['cluster']}")
    args[args.index("--routes") + 1] = ",".join(local)
    return [*args, "-a", "127.0.0.1", "-p", str(ports[name]["client"])]


@pytest.fixture
def cluster(
    env: dict[str, str], nats_server: str, tmp_path: Path
) -> Iterator[tuple[dict[str, dict[str, int]], dict[str, str]]]:
    base = resolve(yaml.safe_load(BASE.read_text()), env)["services"]
    overlay = resolve(yaml.safe_load(CLUSTER.read_text()), env)["services"]
    nodes = {"nats": {**base["nats"], **overlay["nats"]}}
    nodes |= {n: overlay[n] for n in ("nats-2", "nats-3")}
    commands = {n: [str(a) for a in spec["command"]] for n, spec in nodes.items()}
    names = {n: c[c.index("--name") + 1] for n, c in commands.items()}
    assert sorted(names.values()) == ["nats-1", "nats-2", "nats-3"]
    for node, spec in nodes.items():
        assert "healthcheck" in spec or node == "nats"  # nats keeps the base healthcheck
    ports = {
        name: {"client": _free_port(), "monitor": _free_port(), "cluster": _free_port()}
        for name in names.values()
    }
    conf = COMPOSE_DIR.parent / "nats" / "nats-auth.conf"
    passwords = {password_env(u.user): f"pw-{u.user}" for u in all_users()}
    procs = []
    try:
        for node, command in commands.items():
            assert command[command.index("-c") + 1] == "/etc/nats/nats-auth.conf"
            args = _local_command(command, ports, tmp_path)
            args[args.index("-c") + 1] = str(conf)
            log = (tmp_path / f"{node}.log").open("wb")
            procs.append(
                subprocess.Popen(
                    [nats_server, *args],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env={**os.environ, **passwords},
                )
            )
        deadline = time.monotonic() + 30
        while not all(_healthz(p["monitor"]) == 200 for p in ports.values()):
            assert time.monotonic() < deadline, "the three nodes did not become healthy"
            time.sleep(0.2)
        yield ports, passwords
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


def _healthz(port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as resp:
            return int(resp.status)
    except OSError:
        return 0


async def test_cluster_overlay_forms_a_jetstream_cluster(
    cluster: tuple[dict[str, dict[str, int]], dict[str, str]],
) -> None:
    ports, passwords = cluster
    # A service provisions through node 2 and the streams are placed in the cluster.
    nc = await nats.connect(
        f"nats://127.0.0.1:{ports['nats-2']['client']}",
        user="orchestrator",
        password=passwords[password_env("orchestrator")],
        inbox_prefix=inbox_prefix("orchestrator"),
    )
    try:
        js = nc.jetstream(timeout=10)
        await provision(js, "orchestrator")
        info = await js.stream_info("RUNS")
        assert info.cluster is not None and info.cluster.name == "agentbus"
        assert info.cluster.leader in ports
    finally:
        await nc.close()

    def routes() -> int:
        url = f"http://127.0.0.1:{ports['nats-1']['monitor']}/routez"
        with urllib.request.urlopen(url, timeout=5) as resp:
            return int(json.load(resp)["num_routes"])

    assert await asyncio.to_thread(routes) >= 2
