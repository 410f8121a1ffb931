"""Writes the Grafana dashboards (provisioned JSON) from the panels below, one place for all.

    .venv/bin/python deploy/grafana/dashboards.py

Each dashboard is written to deploy/grafana/dashboards/ (mounted by the compose stack) and copied
into the Helm chart (`dashboards/`, its ConfigMap reads them with .Files) and the kustomize
monitoring component: Helm and kustomize read only files under their own directory.
deploy/tests/test_dashboards.py checks the copies are the same and that every query names only
metrics the services export.
"""

# ruff: noqa: E501  (one PromQL query per line reads better than a wrapped one)
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

DEPLOY = Path(__file__).resolve().parents[1]
SOURCE = DEPLOY / "grafana" / "dashboards"
COPIES = (
    DEPLOY / "k8s" / "helm" / "agentbus" / "dashboards",
    DEPLOY / "k8s" / "kustomize" / "components" / "monitoring" / "dashboards",
)
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
RATE = "5m"

# (title, unit, [(legend, PromQL)], width): one panel, a time series.
Panel = tuple[str, str, list[tuple[str, str]], int]


def q(quantile: float, bucket: str, by: str = "") -> str:
    labels = f"le, {by}" if by else "le"
    return f"histogram_quantile({quantile}, sum by ({labels}) (rate({bucket}[{RATE}])))"


def ratio(part: str, whole: str) -> str:
    return f"sum(rate({part}[{RATE}])) / clamp_min(sum(rate({whole}[{RATE}])), 1e-9)"


DASHBOARDS: dict[str, tuple[str, str, list[Panel]]] = {
    "agentbus-agents": (
        "Agentbus · Agents: performance, tokens and cost",
        "Runs by assistant and status, run latency, active executions, model tokens, cost, "
        "model latency, cache hits and fallbacks (orchestrator metrics)",
        [
            ("Runs per second by status", "reqps", [
                ("{{status}}", f"sum by (status) (rate(agentbus_runs_total[{RATE}]))"),
            ], 12),
            ("Run error rate (error + timeout)", "percentunit", [
                ("errors", ratio('agentbus_runs_total{status=~"error|timeout"}', "agentbus_runs_total")),
            ], 12),
            ("Run duration percentiles", "s", [
                ("p50", q(0.5, "agentbus_run_duration_seconds_bucket")),
                ("p95", q(0.95, "agentbus_run_duration_seconds_bucket")),
                ("p99", q(0.99, "agentbus_run_duration_seconds_bucket")),
            ], 12),
            ("Active executions by assistant", "short", [
                ("{{assistant}}", "sum by (assistant) (agentbus_active_runs)"),
            ], 12),
            ("Tokens per second by model and type", "short", [
                ("{{model}} {{type}}", f"sum by (model, type) (rate(agentbus_llm_tokens_total[{RATE}]))"),
            ], 12),
            ("Model cost per hour (USD)", "currencyUSD", [
                ("{{model}}", "sum by (model) (increase(agentbus_llm_cost_usd_total[1h]))"),
            ], 12),
            ("Model call latency p95 by model", "s", [
                ("{{model}}", q(0.95, "agentbus_llm_call_duration_seconds_bucket", "model")),
            ], 12),
            ("Model calls per second by model", "reqps", [
                ("{{model}}", f"sum by (model) (rate(agentbus_llm_calls_total[{RATE}]))"),
            ], 12),
            ("Response cache hit ratio", "percentunit", [
                ("hits", ratio("agentbus_llm_cache_hits_total", "agentbus_llm_calls_total")),
            ], 12),
            ("Fallbacks per second by serving model", "reqps", [
                ("{{model}}", f"sum by (model) (rate(agentbus_llm_fallbacks_total[{RATE}]))"),
            ], 12),
        ],
    ),
    "agentbus-api": (
        "Agentbus · API: errors, latency, rate limits",
        "Gateway requests by status class, error rate, time-to-first-byte percentiles, "
        "429s by rate-limit route, open SSE streams (gateway metrics)",
        [
            ("Requests per second by status class", "reqps", [
                ("{{status}}", f"sum by (status) (rate(agentbus_http_requests_total[{RATE}]))"),
            ], 12),
            ("Error rate (5xx)", "percentunit", [
                ("5xx", ratio('agentbus_http_requests_total{status="5xx"}', "agentbus_http_requests_total")),
                ("4xx", ratio('agentbus_http_requests_total{status="4xx"}', "agentbus_http_requests_total")),
            ], 12),
            ("Latency percentiles (time to first byte)", "s", [
                ("p50", q(0.5, "agentbus_http_request_duration_seconds_bucket")),
                ("p95", q(0.95, "agentbus_http_request_duration_seconds_bucket")),
                ("p99", q(0.99, "agentbus_http_request_duration_seconds_bucket")),
            ], 12),
            ("Slowest routes (p95)", "s", [
                ("{{method}} {{route}}", "topk(10, " + q(0.95, "agentbus_http_request_duration_seconds_bucket", "method, route") + ")"),
            ], 12),
            ("Rate-limit rejections (429) by route", "reqps", [
                ("{{route}}", f"sum by (route) (rate(agentbus_rate_limited_requests_total[{RATE}]))"),
            ], 12),
            ("Open SSE streams by kind", "short", [
                ("{{kind}}", "sum by (kind) (agentbus_sse_streams_open)"),
            ], 12),
        ],
    ),
    "agentbus-bus": (
        "Agentbus · Bus: queue lag and rejects",
        "Messages waiting per durable consumer (queue lag), delivered and unacknowledged, "
        "rejected messages, ingest stage latency and analytics batching",
        [
            ("Queue lag (pending messages) by consumer", "short", [
                ("{{stream}}/{{consumer}}", "max by (stream, consumer) (agentbus_consumer_pending_messages)"),
            ], 12),
            ("Delivered, not yet acknowledged", "short", [
                ("{{stream}}/{{consumer}}", "max by (stream, consumer) (agentbus_consumer_ack_pending_messages)"),
            ], 12),
            ("Rejected messages per second", "reqps", [
                ("{{service}} {{reason}}", f"sum by (service, reason) (rate(agentbus_rejected_messages_total[{RATE}]))"),
            ], 12),
            ("Ingest stage p95", "s", [
                ("{{stage}}", q(0.95, "agentbus_ingest_stage_duration_seconds_bucket", "stage")),
            ], 12),
            ("Analytics rows inserted per second", "short", [
                ("{{table}}", f"sum by (table) (rate(agentbus_analytics_rows_inserted_total[{RATE}]))"),
            ], 12),
            ("Analytics rows buffered", "short", [
                ("{{consumer}}", "sum by (consumer) (agentbus_analytics_buffered_rows)"),
            ], 12),
        ],
    ),
}  # fmt: skip


def panel(index: int, spec: Panel) -> dict[str, Any]:
    title, unit, targets, width = spec
    return {
        "id": index + 1,
        "type": "timeseries",
        "title": title,
        "datasource": DATASOURCE,
        "gridPos": {"h": 8, "w": width, "x": (index % 2) * 12, "y": (index // 2) * 8},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom"}},
        "targets": [
            {"refId": chr(ord("A") + i), "datasource": DATASOURCE, "expr": expr, "legendFormat": legend}
            for i, (legend, expr) in enumerate(targets)
        ],
    }  # fmt: skip


def dashboard(uid: str, title: str, description: str, panels: list[Panel]) -> dict[str, Any]:
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["agentbus"],
        "editable": True,
        "schemaVersion": 39,
        "time": {"from": "now-6h", "to": "now"},
        "refresh": "30s",
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "label": "Prometheus",
                    "type": "datasource",
                    "query": "prometheus",
                }
            ]
        },
        "panels": [panel(i, p) for i, p in enumerate(panels)],
    }


def render() -> dict[str, str]:
    """File name -> JSON text of every dashboard."""
    return {
        f"{uid}.json": json.dumps(dashboard(uid, *spec), indent=2) + "\n"
        for uid, spec in DASHBOARDS.items()
    }


def main() -> None:
    for directory in (SOURCE, *COPIES):
        directory.mkdir(parents=True, exist_ok=True)
        for name, text in render().items():
            (directory / name).write_text(text)
        print(f"wrote {len(DASHBOARDS)} dashboards to {directory.relative_to(DEPLOY.parent)}")


if __name__ == "__main__":
    main()
