"""Fresh tenants for the RAG API tests, made in the gateway's own auth store (as `agentbus up`
makes tenant `dev`), so the tests do not spend the session's low `register` rate limit."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg
import httpx

from agentbus.contracts import new_id
from agentbus.gateway.auth.store import AuthStore
from agentbus.runtime.platform import Platform


@dataclass
class Tenant:
    id: str
    store: AuthStore
    base_url: str

    async def client(self, scopes: tuple[str, ...] = ("admin",)) -> httpx.AsyncClient:
        """A client holding a new API key of this tenant (`admin` scope by default)."""
        _, secret = await self.store.create_api_key(self.id, f"key-{new_id()[:8]}", scopes)
        return httpx.AsyncClient(base_url=self.base_url, headers={"x-api-key": secret}, timeout=120)


async def new_tenant(platform: Platform, pool: asyncpg.Pool) -> Tenant:
    store = AuthStore(pool)
    slug = f"rag-{new_id()[:10].lower()}"
    _, tenant = await store.register(f"{slug}@example.com", "unused-hash", "Rag Co", slug)
    return Tenant(tenant.tenant_id, store, platform.gateway_url)
