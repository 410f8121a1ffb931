"""A2A (JSON-RPC binding, v1.0 and v0.3) at `/a2a/{assistant_id}`, agent cards at
`/.well-known/agent-card.json`: each assistant is an agent, a task is a run, a context a thread."""

from __future__ import annotations

from .routes import router

__all__ = ["router"]
