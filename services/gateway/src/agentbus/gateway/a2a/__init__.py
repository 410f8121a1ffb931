"""A2A (JSON-RPC binding, v1.0 and v0.3) at `/a2a/{assistant_id}`, agent cards at
`/.well-known/agent-card.json`: each assistant is an agent, a task is a run, a context a thread.
Push notifications POST a task's state changes to its configs' URLs (`push.py`)."""

from __future__ import annotations

from .routes import router

__all__ = ["router"]
