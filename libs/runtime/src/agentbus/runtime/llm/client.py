"""LiteLLM, set up for this platform: offline-safe and with the `local/...` provider registered."""

from __future__ import annotations

import os

# Without this, importing litellm fetches the model cost map from the network (and retries).
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import litellm

from agentbus.local_models.provider import LocalProvider

LOCAL = "local"


def _register() -> None:
    if not any(item.get("provider") == LOCAL for item in litellm.custom_provider_map):
        litellm.custom_provider_map = [
            *litellm.custom_provider_map,
            {"provider": LOCAL, "custom_handler": LocalProvider()},
        ]
    # LiteLLM reads the map into its provider list lazily; make it take effect now.
    litellm.utils.custom_llm_setup()  # type: ignore[no-untyped-call]
    litellm.suppress_debug_info = True
    litellm.telemetry = False


_register()

__all__ = ["LOCAL", "litellm"]
