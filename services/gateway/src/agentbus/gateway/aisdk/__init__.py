"""The Vercel AI SDK UI message stream (what `useChat` reads) over the gateway's runs."""

from __future__ import annotations

from .routes import router

__all__ = ["router"]
