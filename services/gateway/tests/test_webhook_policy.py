"""The webhook allow-list (the gateway POSTs from inside the network: an SSRF risk otherwise)."""

from __future__ import annotations

import pytest
from fastapi import HTTPException

from agentbus.gateway.langgraph.followups import WebhookPolicy


def refused(policy: WebhookPolicy, url: str) -> str:
    with pytest.raises(HTTPException) as err:
        policy.check(url)
    assert err.value.status_code == 422
    return str(err.value.detail)


def test_no_list_refuses_every_webhook() -> None:
    assert "AGENTBUS_WEBHOOK_ALLOWED_URLS" in refused(WebhookPolicy(), "https://example.com/h")


def test_entries_match_scheme_host_port_and_path_prefix() -> None:
    policy = WebhookPolicy(
        ("https://hooks.example.com/agentbus", "http://127.0.0.1", "https://ci.example.com:8443")
    )
    for url in (
        "https://hooks.example.com/agentbus",
        "https://hooks.example.com/agentbus/runs?x=1",
        "https://hooks.example.com:443/agentbus/a",
        "http://127.0.0.1:9999/anything",
        "https://ci.example.com:8443/",
    ):
        assert policy.check(url) == url
    for url, why in (
        ("https://hooks.example.com/agentbus-evil", "allow-list"),
        ("https://hooks.example.com/other", "allow-list"),
        ("http://hooks.example.com/agentbus", "allow-list"),
        ("https://hooks.example.com.evil.net/agentbus", "allow-list"),
        ("https://ci.example.com/", "allow-list"),
        ("https://ci.example.com:9443/", "allow-list"),
        ("http://169.254.169.254/latest", "allow-list"),
        ("http://localhost/", "allow-list"),
        ("file:///etc/passwd", "http(s)"),
        ("http://u:p@127.0.0.1/", "credentials"),
        ("http://127.0.0.1/" + "x" * 3000, "longer"),
    ):
        assert why in refused(policy, url), url
