"""Retrieval settings (`AGENTBUS_*`): the shared ones; service-specific ones grow here."""

from __future__ import annotations

from agentbus.runtime.settings import Settings


class RetrievalSettings(Settings):
    pass
