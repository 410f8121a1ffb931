"""FastAPI dependencies: who is calling (`current_principal`), and tenancy helpers.

Credentials are accepted as `Authorization: Bearer <access JWT | API key>` or
`x-api-key: <API key>` (the header `langgraph_sdk` sends). Every failure is a 401 with
`WWW-Authenticate: Bearer`; a missing scope is a 403. Routes scope every query by
`principal.tenant_id` and answer 404 — never 403 — for another tenant's ids, so ids of other
tenants cannot even be confirmed to exist.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, TypeVar

from fastapi import Depends, FastAPI, HTTPException
from fastapi.security import APIKeyHeader, OAuth2PasswordBearer
from starlette.requests import HTTPConnection

from .passwords import Passwords
from .store import AuthStore
from .tokens import TokenError, TokenService, is_api_key

LOGIN_PATH = "/api/v1/auth/login"
SCOPE_ADMIN = "admin"


@dataclass(frozen=True)
class Principal:
    """The caller of a request: a user (JWT) or an API key, always within one tenant."""

    tenant_id: str
    user_id: str | None = None
    api_key_id: str | None = None
    scopes: frozenset[str] = frozenset()

    @property
    def method(self) -> Literal["jwt", "api_key"]:
        return "api_key" if self.api_key_id is not None else "jwt"

    def has(self, scope: str) -> bool:
        return scope in self.scopes


@dataclass
class AuthService:
    """What the auth routes and dependencies need; kept on `app.state.auth`."""

    store: AuthStore
    tokens: TokenService
    passwords: Passwords = field(default_factory=Passwords)


def install_auth(app: FastAPI, auth: AuthService) -> None:
    app.state.auth = auth


# async: a plain `def` dependency costs a trip through the thread pool on every request.
async def auth_of(conn: HTTPConnection) -> AuthService:
    auth: AuthService | None = getattr(conn.app.state, "auth", None)
    if auth is None:
        raise HTTPException(503, "Authentication is not available yet")
    return auth


def unauthorized(detail: str) -> HTTPException:
    return HTTPException(401, detail, headers={"WWW-Authenticate": "Bearer"})


def not_found(what: str = "Resource") -> HTTPException:
    return HTTPException(404, f"{what} not found")


# Declared as security schemes so that /docs offers "Authorize" (password login or an API key).
_bearer = OAuth2PasswordBearer(
    tokenUrl=LOGIN_PATH,
    auto_error=False,
    scheme_name="bearer",
    description="An access token from /api/v1/auth/login, or an API key (ab_...)",
)
_api_key_header = APIKeyHeader(
    name="x-api-key", auto_error=False, scheme_name="api_key", description="An API key (ab_...)"
)


async def current_principal(
    conn: HTTPConnection,
    auth: Annotated[AuthService, Depends(auth_of)],
    bearer: Annotated[str | None, Depends(_bearer)],
    api_key: Annotated[str | None, Depends(_api_key_header)],
) -> Principal:
    """The authenticated caller; 401 when credentials are missing or not valid."""
    if bearer:
        credential, from_key_header = bearer.strip(), False
    elif api_key:
        credential, from_key_header = api_key.strip(), True
    else:
        raise unauthorized("Not authenticated")
    if is_api_key(credential):
        key = await auth.store.api_key_by_secret(credential)
        if key is None:
            raise unauthorized("Invalid API key")
        principal = Principal(
            tenant_id=key.tenant_id, api_key_id=key.key_id, scopes=frozenset(key.scopes)
        )
    elif from_key_header:
        raise unauthorized("Invalid API key")
    else:
        try:
            claims = auth.tokens.decode(credential, "access")
        except TokenError as exc:
            raise unauthorized(str(exc)) from None
        principal = Principal(
            tenant_id=claims.tid, user_id=claims.sub, scopes=frozenset(claims.scopes)
        )
    # For logs, metrics and per-tenant rate limits further down the request.
    conn.state.principal = principal
    return principal


def require_scope(scope: str) -> Callable[[Principal], Awaitable[Principal]]:
    """A dependency: the principal, which must hold `scope` (403 otherwise)."""

    async def dependency(
        principal: Annotated[Principal, Depends(current_principal)],
    ) -> Principal:
        if not principal.has(scope):
            raise HTTPException(403, f"This requires the '{scope}' scope")
        return principal

    return dependency


async def current_tenant_id(principal: Annotated[Principal, Depends(current_principal)]) -> str:
    return principal.tenant_id


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]
AdminPrincipal = Annotated[Principal, Depends(require_scope(SCOPE_ADMIN))]
TenantId = Annotated[str, Depends(current_tenant_id)]


# --- tenancy helpers ---------------------------------------------------------------------------


R = TypeVar("R")


def tenant_of(resource: Any) -> str | None:
    """The `tenant_id` of an object, a dict or an asyncpg record; None when it has none."""
    value = getattr(resource, "tenant_id", None)
    if value is None:
        try:
            value = resource["tenant_id"]
        except (TypeError, LookupError):
            return None
    return value if isinstance(value, str) else None


def owned_or_404(resource: R | None, principal: Principal, what: str = "Resource") -> R:
    """`resource` if it exists and belongs to the caller's tenant; otherwise 404.

    Works with objects that have `tenant_id`, and with dicts and asyncpg records holding it.
    Queries should filter by tenant already; this is the second check.
    """
    if resource is None or tenant_of(resource) != principal.tenant_id:
        raise not_found(what)
    return resource


def check_tenant(principal: Principal, tenant_id: str | None, what: str = "Resource") -> None:
    """404 unless `tenant_id` is the caller's tenant."""
    if tenant_id is None or tenant_id != principal.tenant_id:
        raise not_found(what)
