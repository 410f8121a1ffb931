"""MCP over streamable HTTP at `/mcp`: each assistant is a tool, plus `search_documents`."""

from __future__ import annotations

from .endpoint import McpEndpoint

__all__ = ["McpEndpoint"]
