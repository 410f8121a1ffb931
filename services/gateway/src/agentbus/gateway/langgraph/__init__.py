"""The LangGraph Agent Server API (the subset `langgraph_sdk` uses), with multitask strategies
enforced per thread across gateway replicas."""

from __future__ import annotations

from . import store_routes  # noqa: F401  (registers /store on the router)
from .routes import router

__all__ = ["router"]
