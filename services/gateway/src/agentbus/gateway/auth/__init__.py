"""The gateway's authentication and tenancy.

Users sign in with email and password (JWT access + single-use refresh tokens); programs use
per-tenant API keys. Every request resolves to a `Principal` whose `tenant_id` scopes all data.

Wiring (in the gateway's start-up)::

    api.include_router(auth.router)
    service = await auth.start_auth(api, pool, auth_settings, data_dir, dev_tenant=True)
"""

from __future__ import annotations

from pathlib import Path

import asyncpg
from fastapi import FastAPI

from .deps import (
    SCOPE_ADMIN,
    AdminPrincipal,
    AuthService,
    CurrentPrincipal,
    Principal,
    TenantId,
    check_tenant,
    current_principal,
    current_tenant_id,
    install_auth,
    not_found,
    owned_or_404,
    require_scope,
    unauthorized,
)
from .passwords import Passwords
from .routes import router
from .store import AuthStore, ensure_dev_tenant
from .tokens import AuthSettings, TokenService


async def start_auth(
    app: FastAPI,
    pool: asyncpg.Pool,
    settings: AuthSettings,
    data_dir: Path,
    *,
    dev_tenant: bool = False,
) -> AuthService:
    """Create the tables, build the token service and put it all on `app.state.auth`.

    With `dev_tenant`, also make sure tenant `dev` and `<data_dir>/dev-api-key` exist.
    """
    store = AuthStore(pool)
    await store.ensure_schema()
    tokens = TokenService.from_settings(settings.resolved(data_dir))
    service = AuthService(store=store, tokens=tokens)
    install_auth(app, service)
    if dev_tenant:
        await ensure_dev_tenant(store, data_dir)
    return service


__all__ = [
    "SCOPE_ADMIN",
    "AdminPrincipal",
    "AuthService",
    "AuthSettings",
    "AuthStore",
    "CurrentPrincipal",
    "Passwords",
    "Principal",
    "TenantId",
    "TokenService",
    "check_tenant",
    "current_principal",
    "current_tenant_id",
    "ensure_dev_tenant",
    "install_auth",
    "not_found",
    "owned_or_404",
    "require_scope",
    "router",
    "start_auth",
    "unauthorized",
]
