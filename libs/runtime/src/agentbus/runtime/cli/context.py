"""What every command starts from: the settings, pointed at a platform this data dir runs."""

from __future__ import annotations

import argparse
import os
from typing import Any

from ..platform import read_state
from ..settings import Settings, load


def settings_of(args: argparse.Namespace) -> Settings:
    if getattr(args, "data_dir", None):
        os.environ["AGENTBUS_DATA_DIR"] = str(args.data_dir)
    return load(Settings)


def with_platform_urls(settings: Settings) -> Settings:
    """Point at the engines of a platform running from this data dir, unless env says otherwise."""
    state = read_state(settings.data_dir)
    if state is None:
        return settings
    overrides: dict[str, Any] = {}
    for env_name, engine in (
        ("AGENTBUS_NATS_URL", "nats"),
        ("AGENTBUS_POSTGRES_DSN", "postgres"),
        ("AGENTBUS_GRAPH_URL", "graph"),
    ):
        if env_name not in os.environ and engine in state.engines:
            overrides[env_name.removeprefix("AGENTBUS_").lower()] = state.engines[engine]
    if "graph_url" in overrides and "AGENTBUS_GRAPH_SERVER" not in os.environ:
        overrides["graph_server"] = "falkordb"  # the platform's graph is the embedded one
    return settings.model_copy(update=overrides)


def gateway_url(settings: Settings) -> str:
    state = read_state(settings.data_dir)
    if state is not None and "AGENTBUS_GATEWAY_PORT" not in os.environ:
        return state.gateway_url
    return f"http://{settings.gateway_host}:{settings.gateway_port}"
