"""Small helpers the e2e tests share."""

from __future__ import annotations

from agentbus.runtime.platform import Platform


def dev_key(platform: Platform) -> str:
    """The dev tenant's API key that `agentbus up` writes into the data dir."""
    return (platform.data_dir / "dev-api-key").read_text().strip()
