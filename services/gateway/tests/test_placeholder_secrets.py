"""The placeholder JWT secrets shipped in deploy/ pass the length check but are public: the
gateway refuses to start with them (issue 13, point 9). `agentbus up` sets none (a random secret
is kept under the data dir), so it is unaffected."""

from __future__ import annotations

import re
import secrets
from pathlib import Path

import pytest

from agentbus.gateway.settings import GatewaySettings

DEPLOY = Path(__file__).resolve().parents[3] / "deploy"


def shipped_placeholders() -> list[str]:
    dev = (DEPLOY / "k8s/kustomize/overlays/dev/kustomization.yaml").read_text()
    env = (DEPLOY / "compose/.env.example").read_text()
    found = re.findall(r"jwt-secret=(\S+)", dev) + re.findall(
        r"^AGENTBUS_JWT_SECRET=(\S+)", env, re.M
    )
    assert len(found) == 2, found
    return found


@pytest.mark.parametrize("secret", shipped_placeholders())
def test_a_shipped_placeholder_secret_is_refused(
    secret: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert len(secret) >= 32  # the length check alone lets it through
    monkeypatch.setenv("AGENTBUS_JWT_SECRET", secret)
    with pytest.raises(ValueError, match="placeholder"):
        GatewaySettings()


def test_a_random_secret_and_none_are_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTBUS_JWT_SECRET", secrets.token_urlsafe(48))
    assert GatewaySettings().jwt_secret is not None
    monkeypatch.delenv("AGENTBUS_JWT_SECRET")
    assert GatewaySettings().jwt_secret is None  # agentbus up: generated under the data dir
