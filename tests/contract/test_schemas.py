"""The JSON Schemas checked in under libs/contracts/schemas/ match the code."""

from __future__ import annotations

from agentbus.contracts import export


def test_checked_in_schemas_match_the_models() -> None:
    stale = export.diff()
    assert not stale, f"run `make contracts` and review the change; stale: {stale}"


def test_a_model_change_is_detected(tmp_path) -> None:
    export.write(tmp_path)
    assert export.diff(tmp_path) == []
    path = tmp_path / "RunRequested.json"
    path.write_text(path.read_text().replace('"run_id"', '"runid"'))
    assert export.diff(tmp_path) == ["RunRequested.json"]
    (tmp_path / "Removed.json").write_text("{}")
    assert "Removed.json" in export.diff(tmp_path)
    export.write(tmp_path)
    assert export.diff(tmp_path) == []
