"""Settings: defaults, environment, derived paths and one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentbus.runtime.settings import ConfigError, Settings, load


def test_defaults_and_derived_paths(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    settings = load(Settings)
    assert settings.data_dir == tmp_path / "var"
    assert settings.clickhouse_dsn == f"chdb://{tmp_path / 'var' / 'clickhouse'}"
    assert settings.gateway_port == 8080
    assert settings.traces_dir == tmp_path / "var" / "traces"


def test_environment_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTBUS_GATEWAY_PORT", "9090")
    monkeypatch.setenv("AGENTBUS_CLICKHOUSE_DSN", "http://ch:8123")
    settings = load(Settings)
    assert settings.gateway_port == 9090
    assert settings.clickhouse_dsn == "http://ch:8123"


def test_bad_values_are_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTBUS_GATEWAY_PORT", "99999")
    monkeypatch.setenv("AGENTBUS_POSTGRES_DSN", "mysql://x")
    with pytest.raises(ConfigError) as err:
        load(Settings)
    message = str(err.value)
    assert "\n" not in message
    assert "AGENTBUS_GATEWAY_PORT" in message and "AGENTBUS_POSTGRES_DSN" in message
