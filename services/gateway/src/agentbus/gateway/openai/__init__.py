"""The OpenAI-compatible API (`/v1/models`, `/v1/chat/completions`) over the gateway's runs."""

from __future__ import annotations

from .routes import router

__all__ = ["router"]
