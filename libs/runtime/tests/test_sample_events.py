"""The sample organisation's event generator: deterministic, consistent, and clear on bad input."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from agentbus.runtime.demo import SampleError, load_org, sample_documents
from agentbus.runtime.sample_events import ID_PREFIX, Organisation, generate

SAMPLES = Path(__file__).resolve().parents[3] / "samples" / "acme"
END = datetime(2026, 6, 30, 12, tzinfo=UTC)


def test_same_seed_and_end_give_the_same_events() -> None:
    org = load_org(SAMPLES)
    first, second = generate(org, "dev", END), generate(org, "dev", END)
    assert first.events == second.events
    ids = [e.id for e in first.events]
    assert len(ids) == len(set(ids)) and all(i.startswith(ID_PREFIX) for i in ids)
    assert all(e.ts < END for e in first.events)
    assert [e.ts for e in first.events] == sorted(e.ts for e in first.events)


def test_deployments_ship_earlier_commits_and_incidents_pair_up() -> None:
    sample = generate(load_org(SAMPLES), "dev", END)
    committed = {
        e.data["sha"]: (e.ts, e.data["repository"]) for e in sample.events if e.type == "commit"
    }
    deployments = {e.data["deployment_id"]: e for e in sample.events if e.type == "deployment"}
    assert len(deployments) == sample.deployments > 50
    shipped: list[str] = []
    for d in deployments.values():
        for sha in d.data["commits"]:
            ts, repo = committed[sha]
            assert ts < d.ts and repo == d.data["service"]
        shipped.extend(d.data["commits"])
    assert len(shipped) == len(set(shipped))  # each commit ships once
    incidents: dict[str, list[str]] = {}
    for e in sample.events:
        if e.type == "incident":
            assert e.data["deployment_id"] in deployments
            incidents.setdefault(e.data["incident_id"], []).append(e.data["status"])
    assert len(incidents) == sample.incidents > 0
    assert all(states == ["open", "resolved"] for states in incidents.values())


def test_only_the_rust_people_touch_rust_files() -> None:
    sample = generate(load_org(SAMPLES), "dev", END)
    rust = {
        e.data["author"]["name"]
        for e in sample.events
        if e.type == "commit" and any(f.endswith(".rs") for f in e.data["files"])
    }
    assert rust == {"Priya Nair", "Tomas Ortega"}


def test_every_document_format_is_in_the_sample() -> None:
    suffixes = {p.suffix for p in sample_documents(SAMPLES)}
    assert {".md", ".html", ".pdf"} <= suffixes


def test_a_broken_organisation_names_its_problem(tmp_path: Path) -> None:
    raw = json.loads((SAMPLES / "org.json").read_text())
    raw["people"][0]["team"] = "Nobody"
    with pytest.raises(ValueError, match="unknown team 'Nobody'"):
        Organisation.from_json(raw)
    (tmp_path / "org.json").write_text("{not json")
    with pytest.raises(SampleError, match="not a valid sample organisation"):
        load_org(tmp_path)
    with pytest.raises(SampleError, match="no sample organisation"):
        load_org(tmp_path / "missing")
