"""The Grafana dashboards and their scrape configs: every panel's PromQL parses and names only
metrics the services export (collected from the code's metric definitions), the copies Helm and
kustomize ship are the generated ones, and the compose stack, the Helm chart and the kustomize
component scrape what the services serve."""

from __future__ import annotations

import ast
import functools
import importlib.util
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import promql_parser
import pytest
import yaml
from prometheus_client import CollectorRegistry

from agentbus.contracts import SERVICES
from agentbus.runtime.metrics import RunMetrics

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
SOURCE = DEPLOY / "grafana" / "dashboards"
CHART = DEPLOY / "k8s" / "helm" / "agentbus"
COMPONENT = DEPLOY / "k8s" / "kustomize" / "components" / "monitoring"
COMPOSE_DIR = DEPLOY / "compose"
METRIC_KINDS = {"Counter": ("_total",), "Gauge": ("",), "Histogram": ("_bucket", "_sum", "_count")}


def generator() -> Any:
    spec = importlib.util.spec_from_file_location(
        "dashboards", DEPLOY / "grafana" / "dashboards.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@functools.cache
def exported_metrics() -> frozenset[str]:
    """Every series name the services' code defines: `Counter("x", ...)` exports x_total, a
    Histogram x_bucket/_sum/_count, a Gauge x. Read from the source, tests excluded."""
    names: set[str] = set()
    sources = [*(ROOT / "libs").glob("*/src/**/*.py"), *(ROOT / "services").glob("*/src/**/*.py")]
    for path in sources:
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call) or not node.args:
                continue
            kind = getattr(node.func, "id", getattr(node.func, "attr", None))
            first = node.args[0]
            if kind in METRIC_KINDS and isinstance(first, ast.Constant):
                names |= {f"{first.value}{suffix}" for suffix in METRIC_KINDS[kind]}
    return frozenset(names)


def selectors(expr: Any) -> Iterator[str]:
    """The metric names a parsed PromQL expression selects."""
    if isinstance(expr, promql_parser.VectorSelector):
        yield str(expr.name)
    elif isinstance(expr, promql_parser.MatrixSelector):
        yield from selectors(expr.vector_selector)
    elif isinstance(expr, promql_parser.BinaryExpr):
        yield from selectors(expr.lhs)
        yield from selectors(expr.rhs)
    elif isinstance(expr, promql_parser.Call):
        for arg in expr.args:
            yield from selectors(arg)
    elif isinstance(expr, promql_parser.AggregateExpr):
        yield from selectors(expr.expr)
        if expr.param is not None:
            yield from selectors(expr.param)
    elif isinstance(
        expr, (promql_parser.ParenExpr, promql_parser.SubqueryExpr, promql_parser.UnaryExpr)
    ):
        yield from selectors(expr.expr)


def dashboards() -> dict[str, dict[str, Any]]:
    found = {p.name: json.loads(p.read_text()) for p in sorted(SOURCE.glob("*.json"))}
    assert found, f"no dashboards in {SOURCE}"
    return found


def test_the_metric_collector_finds_what_a_registry_holds() -> None:
    """The source scan is checked against a real registry, so it cannot quietly find nothing."""
    registry = CollectorRegistry()
    RunMetrics(registry)
    families = {family.name for family in registry.collect()}
    defined = exported_metrics()
    for family in families:
        assert {family, f"{family}_total", f"{family}_bucket"} & defined, family
    for suffix in ("_total", "_bucket", "_sum", "_count"):
        defined = {n.removesuffix(suffix) for n in defined}
    assert families <= defined


def test_every_panel_query_names_only_exported_metrics() -> None:
    exported = exported_metrics()
    checked = 0
    for name, board in dashboards().items():
        assert board["uid"] and board["title"] and board["panels"], name
        for panel in board["panels"]:
            assert panel["targets"], (name, panel["title"])
            for target in panel["targets"]:
                expr = promql_parser.parse(target["expr"])  # a syntax error raises here
                used = set(selectors(expr))
                assert used, (name, panel["title"], target["expr"])
                missing = used - exported
                assert not missing, f"{name} / {panel['title']}: {sorted(missing)} not exported"
                checked += 1
    assert checked >= 20


def test_a_wrong_metric_name_is_caught() -> None:
    expr = promql_parser.parse("sum(rate(agentbus_runs_totl[5m])) / sum(agentbus_active_runs)")
    assert set(selectors(expr)) - exported_metrics() == {"agentbus_runs_totl"}
    with pytest.raises(ValueError):
        promql_parser.parse("sum(rate(agentbus_runs_total[5m])")


def test_the_panels_cover_the_issues_topics() -> None:
    text = json.dumps(dashboards())
    for metric in (
        "agentbus_runs_total",  # agent performance, error rates
        "agentbus_run_duration_seconds_bucket",  # latency percentiles
        "agentbus_llm_tokens_total",  # tokens
        "agentbus_llm_cost_usd_total",  # cost
        "agentbus_http_request_duration_seconds_bucket",  # API latency percentiles
        "agentbus_http_requests_total",  # API error rates
        "agentbus_active_runs",  # active executions
        "agentbus_rate_limited_requests_total",  # rate-limit rejections
        "agentbus_consumer_pending_messages",  # queue lag
    ):
        assert metric in text, metric


def test_shipped_copies_are_the_generated_dashboards() -> None:
    rendered = generator().render()
    for directory in (SOURCE, CHART / "dashboards", COMPONENT / "dashboards"):
        files = {p.name: p.read_text() for p in directory.glob("*.json")}
        assert files == rendered, f"{directory}: run `python deploy/grafana/dashboards.py`"


def test_compose_scrapes_every_service_and_provisions_the_dashboards() -> None:
    env = {
        line.partition("=")[0]: line.partition("=")[2]
        for line in (COMPOSE_DIR / ".env.example").read_text().splitlines()
        if line and not line.startswith("#")
    }
    services = yaml.safe_load((COMPOSE_DIR / "compose.yaml").read_text())["services"]
    prom = services["prometheus"]
    mounts = {m.split(":")[1]: m.split(":")[0] for m in prom["volumes"]}
    config = yaml.safe_load((COMPOSE_DIR / mounts["/etc/prometheus/prometheus.yml"]).read_text())
    targets = {
        (target, job.get("metrics_path", "/metrics"))
        for job in config["scrape_configs"]
        for static in job["static_configs"]
        for target in static["targets"]
    }
    ops_port = services["orchestrator"]["environment"].get("AGENTBUS_OPS_PORT") or "9090"
    expected = {("gateway:8080", "/metrics/")} | {
        (f"{name}:{ops_port}", "/metrics") for name in SERVICES if name != "gateway"
    }
    assert targets == expected
    grafana = services["grafana"]
    mounts = {m.split(":")[1]: m.split(":")[0] for m in grafana["volumes"]}
    assert (COMPOSE_DIR / mounts["/var/lib/grafana/dashboards/agentbus"]).resolve() == SOURCE
    provisioning = COMPOSE_DIR / mounts["/etc/grafana/provisioning"].removesuffix(":ro")
    provider = yaml.safe_load((provisioning / "dashboards" / "agentbus.yaml").read_text())
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards/agentbus"
    source = yaml.safe_load((provisioning / "datasources" / "prometheus.yaml").read_text())
    assert source["datasources"][0]["url"] == "http://prometheus:9090"
    assert grafana["depends_on"]["prometheus"]["condition"] == "service_healthy"
    assert {"PROMETHEUS_IMAGE", "GRAFANA_IMAGE", "GRAFANA_PORT"} <= env.keys()


def render(*args: str) -> list[dict[str, Any]]:
    out = subprocess.run(args, capture_output=True, text=True, timeout=60, check=True).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def monitoring_objects(docs: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    (dash,) = [
        d for d in docs if d["kind"] == "ConfigMap" and "dashboards" in d["metadata"]["name"]
    ]
    (monitor,) = [d for d in docs if d["kind"] == "ServiceMonitor"]
    return dash, monitor


def check_monitoring(docs: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    dash, monitor = monitoring_objects(docs)
    assert dash["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert dash["data"] == generator().render()
    kubernetes_validate.validate(dash, "1.30", strict=True)
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    # Its selector picks every service's Service, whose ports it scrapes by name.
    selector = monitor["spec"]["selector"]["matchLabels"]
    chosen = [
        d
        for d in docs
        if d["kind"] == "Service" and selector.items() <= d["metadata"]["labels"].items()
    ]
    assert len(chosen) == len(SERVICES)
    ports = {p["name"] for svc in chosen for p in svc["spec"]["ports"]}
    endpoints = {e["port"]: e["path"] for e in monitor["spec"]["endpoints"]}
    assert ports == endpoints.keys() == {"http", "ops"}
    assert endpoints == {"http": "/metrics/", "ops": "/metrics"}
    return dash, monitor


def test_helm_ships_the_dashboards_and_a_service_monitor_when_asked(helm: str) -> None:
    on = render(
        helm, "template", "agentbus", str(CHART),
        "--set", "monitoring.dashboards.enabled=true",
        "--set", "monitoring.serviceMonitor.enabled=true",
    )  # fmt: skip
    check_monitoring(on)
    off = render(helm, "template", "agentbus", str(CHART))
    assert not [d for d in off if d["kind"] == "ServiceMonitor"]
    too_vague = "monitoring.serviceMonitor.interval=often"
    bad = subprocess.run(
        [helm, "template", "agentbus", str(CHART), "--set", too_vague],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode != 0 and "interval" in bad.stderr


def test_the_kustomize_component_matches_the_chart(helm: str, kubectl: str, tmp_path: Path) -> None:
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                # kustomize takes only relative paths to other kustomizations.
                "resources": [os.path.relpath(DEPLOY / "k8s" / "kustomize" / "base", overlay)],
                "components": [os.path.relpath(COMPONENT, overlay)],
            }
        )
    )
    kust_dash, kust_monitor = check_monitoring(render(kubectl, "kustomize", str(overlay)))
    helm_dash, helm_monitor = monitoring_objects(
        render(
            helm,
            "template",
            "agentbus",
            str(CHART),
            "--set",
            "monitoring.dashboards.enabled=true",
            "--set",
            "monitoring.serviceMonitor.enabled=true",
        )
    )
    assert kust_dash["metadata"]["name"] == helm_dash["metadata"]["name"]
    assert kust_dash["data"] == helm_dash["data"]
    assert kust_monitor["spec"] == helm_monitor["spec"]
