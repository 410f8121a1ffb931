"""Bolt drivers for the knowledge graph (Neo4j in production, FalkorDB embedded).

Why every process gets its driver here: FalkorDB's Bolt listener, on a client's GOODBYE, closes
the socket but keeps its descriptor registered, so the next connection that reuses that number
is never served (seen with strace; it makes restarts and tests hang at random). Our drivers
therefore close connections without GOODBYE, which Neo4j treats exactly like a clean close.
"""

from __future__ import annotations

from typing import Any

from neo4j import AsyncDriver, AsyncGraphDatabase, Driver, GraphDatabase

_patched = False


def _close_without_goodbye() -> None:
    global _patched
    if _patched:
        return
    from neo4j._async.io._bolt._base import AsyncBolt
    from neo4j._sync.io._bolt._base import Bolt

    async def aclose(self: Any) -> None:
        self.kill()

    def close(self: Any) -> None:
        self.kill()

    AsyncBolt.close = aclose  # type: ignore[method-assign]
    Bolt.close = close  # type: ignore[method-assign]
    _patched = True


def _auth(user: str, password: str) -> tuple[str, str] | None:
    return (user, password) if user else None


def async_driver(url: str, user: str = "", password: str = "", **options: Any) -> AsyncDriver:
    _close_without_goodbye()
    return AsyncGraphDatabase.driver(url, auth=_auth(user, password), **options)


def sync_driver(url: str, user: str = "", password: str = "", **options: Any) -> Driver:
    _close_without_goodbye()
    return GraphDatabase.driver(url, auth=_auth(user, password), **options)
