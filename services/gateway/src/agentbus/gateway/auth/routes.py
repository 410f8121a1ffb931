"""Auth routes under /api/v1: register, login, refresh, me, and the tenant's API keys."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
)
from pydantic_core import PydanticCustomError
from starlette.datastructures import UploadFile

from agentbus.contracts import new_id

from ..ratelimit import per_account, per_client
from .deps import (
    AdminPrincipal,
    AuthService,
    CurrentPrincipal,
    auth_of,
    not_found,
    unauthorized,
)
from .passwords import GivenPassword, NewPassword
from .store import ApiKey, EmailTaken, RefreshOutcome, Tenant, User, slugify
from .tokens import TokenError

router = APIRouter(prefix="/api/v1")

Auth = Annotated[AuthService, Depends(auth_of)]

_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$")
BAD_CREDENTIALS = "Incorrect email or password"
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def _email(value: str) -> str:
    value = value.strip().lower()
    if not _EMAIL.fullmatch(value):
        raise PydanticCustomError("email", "Not a valid email address")
    return value


Email = Annotated[str, Field(max_length=254), AfterValidator(_email)]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RegisterRequest(Body):
    email: Email
    password: NewPassword
    tenant_name: Name | None = None


class LoginRequest(Body):
    email: Email
    password: GivenPassword


class LoginForm(BaseModel):
    """The OAuth2 password grant (RFC 6749 §4.3), as `OAuth2PasswordRequestForm` reads it."""

    model_config = ConfigDict(extra="ignore")
    grant_type: Literal["password"] | None = None
    username: Email
    password: GivenPassword
    scope: str = ""


class RefreshRequest(Body):
    refresh_token: str = Field(min_length=1, max_length=4096)


class TenantOut(BaseModel):
    id: str
    name: str
    created_at: datetime

    @classmethod
    def of(cls, tenant: Tenant) -> TenantOut:
        return cls(id=tenant.tenant_id, name=tenant.name, created_at=tenant.created_at)


class UserOut(BaseModel):
    id: str
    email: str
    role: str
    tenant_id: str
    created_at: datetime
    last_login_at: datetime | None

    @classmethod
    def of(cls, user: User) -> UserOut:
        return cls(
            id=user.user_id,
            email=user.email,
            role=user.role,
            tenant_id=user.tenant_id,
            created_at=user.created_at,
            last_login_at=user.last_login_at,
        )


class RegisterResponse(BaseModel):
    user: UserOut
    tenant: TenantOut


class TokenPair(BaseModel):
    access_token: str
    refresh_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int = Field(description="Seconds until the access token expires")
    refresh_expires_in: int = Field(description="Seconds until the refresh token expires")


class AuthInfo(BaseModel):
    method: Literal["jwt", "api_key"]
    scopes: list[str]
    api_key_id: str | None


class MeResponse(BaseModel):
    user: UserOut | None = Field(description="None when the caller is an API key")
    tenant: TenantOut
    auth: AuthInfo


class ApiKeyCreate(Body):
    name: Name
    scopes: list[Literal["admin"]] = Field(default_factory=list)


class ApiKeyOut(BaseModel):
    id: str
    name: str
    prefix: str = Field(description="The key's first characters, to tell keys apart")
    scopes: list[str]
    created_at: datetime
    last_used_at: datetime | None

    @classmethod
    def of(cls, key: ApiKey) -> ApiKeyOut:
        return cls(
            id=key.key_id,
            name=key.name,
            prefix=key.prefix,
            scopes=list(key.scopes),
            created_at=key.created_at,
            last_used_at=key.last_used_at,
        )


class ApiKeyCreated(ApiKeyOut):
    key: str = Field(description="The secret. Shown this once: it is stored only as a hash")


class ApiKeyList(BaseModel):
    items: list[ApiKeyOut]


_UNAUTHORIZED: dict[int | str, dict[str, Any]] = {401: {"description": "Not authenticated"}}


# --- register, login, refresh, me ----------------------------------------------------------


@router.post(
    "/auth/register",
    status_code=201,
    dependencies=[Depends(per_client("register"))],
    response_model=RegisterResponse,
    tags=["auth"],
    summary="Create a tenant and its first user (an admin)",
)
async def register(req: RegisterRequest, auth: Auth) -> RegisterResponse:
    """A taken email gets the same answer as a free one (nothing is created, the account is
    untouched): the endpoint must not tell who has an account here."""
    slug = slugify(req.tenant_name or "") or slugify(req.email.split("@", 1)[0])
    name = req.tenant_name or req.email.split("@", 1)[0]
    # Hashed either way, so the taken case does not answer faster.
    password_hash = await auth.passwords.hash(req.password)
    if await auth.store.user_by_email(req.email) is not None:
        return _unsaved(req.email, name)
    try:
        user, tenant = await auth.store.register(req.email, password_hash, name, slug)
    except EmailTaken:
        return _unsaved(req.email, name)
    return RegisterResponse(user=UserOut.of(user), tenant=TenantOut.of(tenant))


def _unsaved(email: str, tenant_name: str) -> RegisterResponse:
    """What a registration answers, for an email that is taken: shaped like a real one."""
    now = datetime.now(UTC)
    tenant_id = new_id()
    user = UserOut(
        id=new_id(),
        email=email.lower(),
        role="admin",
        tenant_id=tenant_id,
        created_at=now,
        last_login_at=None,
    )
    return RegisterResponse(
        user=user, tenant=TenantOut(id=tenant_id, name=tenant_name, created_at=now)
    )


def _invalid(
    exc: ValidationError, *, rename: dict[str, str] | None = None
) -> RequestValidationError:
    errors = []
    for err in exc.errors(include_url=False):
        loc = tuple((rename or {}).get(str(p), p) for p in err["loc"])
        errors.append({**err, "loc": ("body", *loc)})
    return RequestValidationError(errors)


async def _login_credentials(request: Request) -> tuple[str, str]:
    """(email, password) from a JSON body or an OAuth2 password form."""
    content_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if content_type == "application/json":
        try:
            body = LoginRequest.model_validate_json(await request.body())
        except ValidationError as exc:
            raise _invalid(exc) from None
        return body.email, body.password
    if content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        async with request.form(max_files=0, max_fields=20) as form:
            fields: dict[str, Any] = {}
            for key, value in form.multi_items():
                if isinstance(value, UploadFile):
                    raise HTTPException(400, "Files are not accepted here")
                fields.setdefault(key, value)
        try:
            data = LoginForm.model_validate(fields)
        except ValidationError as exc:
            raise _invalid(exc) from None
        return data.username, data.password
    raise HTTPException(
        415, "Send application/json or application/x-www-form-urlencoded credentials"
    )


_LOGIN_BODY = {
    "required": True,
    "content": {
        "application/json": {"schema": LoginRequest.model_json_schema()},
        "application/x-www-form-urlencoded": {
            "schema": {
                "type": "object",
                "required": ["username", "password"],
                "properties": {
                    "grant_type": {"type": "string", "enum": ["password"]},
                    "username": {"type": "string", "description": "The email"},
                    "password": {"type": "string", "format": "password"},
                    "scope": {"type": "string"},
                },
            }
        },
    },
}


async def _issue(auth: AuthService, user: User, family: str | None = None) -> TokenPair:
    access = auth.tokens.access(user.user_id, user.tenant_id, user.scopes)
    refresh = auth.tokens.refresh(user.user_id, user.tenant_id, family)
    assert refresh.family is not None
    if family is None:  # a new login session; rotations record their token in the store
        await auth.store.add_refresh_token(
            refresh.jti, refresh.family, user.user_id, user.tenant_id, refresh.expires_at
        )
    return _pair(auth, access.token, refresh.token)


def _pair(auth: AuthService, access: str, refresh: str) -> TokenPair:
    return TokenPair(
        access_token=access,
        refresh_token=refresh,
        expires_in=int(auth.tokens.access_ttl.total_seconds()),
        refresh_expires_in=int(auth.tokens.refresh_ttl.total_seconds()),
    )


@router.post(
    "/auth/login",
    response_model=TokenPair,
    dependencies=[Depends(per_client("login"))],
    tags=["auth"],
    summary="Sign in (JSON {email, password} or the OAuth2 password form)",
    openapi_extra={"requestBody": _LOGIN_BODY},
    responses={**_UNAUTHORIZED, 415: {"description": "Unsupported content type"}},
)
async def login(request: Request, response: Response, auth: Auth) -> TokenPair:
    email, password = await _login_credentials(request)
    await per_account(request, "login_account", email)
    user = await auth.store.user_by_email(email)
    if user is None:
        await auth.passwords.waste_time(password)
        raise unauthorized(BAD_CREDENTIALS)
    if not await auth.passwords.verify(user.password_hash, password) or user.disabled:
        raise unauthorized(BAD_CREDENTIALS)
    rehashed = None
    if auth.passwords.needs_rehash(user.password_hash):
        rehashed = await auth.passwords.hash(password)
    await auth.store.record_login(user.user_id, rehashed)
    await auth.store.purge_expired_refresh_tokens()
    response.headers.update(NO_STORE)
    return await _issue(auth, user)


@router.post(
    "/auth/refresh",
    response_model=TokenPair,
    tags=["auth"],
    summary="Trade a refresh token for a new pair (each refresh token works once)",
    responses=_UNAUTHORIZED,
)
async def refresh(req: RefreshRequest, response: Response, auth: Auth) -> TokenPair:
    try:
        claims = auth.tokens.decode(req.refresh_token, "refresh")
    except TokenError as exc:
        raise unauthorized(str(exc)) from None
    successor = auth.tokens.refresh(claims.sub, claims.tid, claims.fam)
    outcome, user = await auth.store.rotate_refresh_token(
        claims.jti, successor.jti, successor.expires_at
    )
    if outcome is RefreshOutcome.REUSED:
        raise unauthorized("Refresh token was already used; sign in again")
    if outcome is not RefreshOutcome.ROTATED or user is None:
        raise unauthorized("Refresh token is no longer valid")
    access = auth.tokens.access(user.user_id, user.tenant_id, user.scopes)
    response.headers.update(NO_STORE)
    return _pair(auth, access.token, successor.token)


@router.get(
    "/users/me",
    response_model=MeResponse,
    tags=["auth"],
    summary="The caller: user (None for an API key), tenant and scopes",
    responses=_UNAUTHORIZED,
)
async def me(principal: CurrentPrincipal, auth: Auth) -> MeResponse:
    tenant = await auth.store.tenant(principal.tenant_id)
    if tenant is None:
        raise unauthorized("Tenant no longer exists")
    user = None
    if principal.user_id is not None:
        user = await auth.store.user(principal.user_id)
        if user is None or user.disabled or user.tenant_id != principal.tenant_id:
            raise unauthorized("User no longer exists")
    return MeResponse(
        user=UserOut.of(user) if user else None,
        tenant=TenantOut.of(tenant),
        auth=AuthInfo(
            method=principal.method,
            scopes=sorted(principal.scopes),
            api_key_id=principal.api_key_id,
        ),
    )


# --- API keys ------------------------------------------------------------------------------

_KEY_RESPONSES: dict[int | str, dict[str, Any]] = {
    **_UNAUTHORIZED,
    403: {"description": "The caller lacks the 'admin' scope"},
}


@router.post(
    "/api-keys",
    status_code=201,
    response_model=ApiKeyCreated,
    tags=["api-keys"],
    summary="Create an API key for the caller's tenant (the secret is shown once)",
    responses=_KEY_RESPONSES,
)
async def create_api_key(
    req: ApiKeyCreate, principal: AdminPrincipal, auth: Auth, response: Response
) -> ApiKeyCreated:
    key, secret = await auth.store.create_api_key(
        principal.tenant_id, req.name, req.scopes, created_by=principal.user_id
    )
    response.headers.update(NO_STORE)
    return ApiKeyCreated(**ApiKeyOut.of(key).model_dump(), key=secret)


@router.get(
    "/api-keys",
    response_model=ApiKeyList,
    tags=["api-keys"],
    summary="The tenant's API keys (never their secrets)",
    responses=_KEY_RESPONSES,
)
async def list_api_keys(principal: AdminPrincipal, auth: Auth) -> ApiKeyList:
    keys = await auth.store.api_keys(principal.tenant_id)
    return ApiKeyList(items=[ApiKeyOut.of(k) for k in keys])


@router.delete(
    "/api-keys/{key_id}",
    status_code=204,
    tags=["api-keys"],
    summary="Delete (revoke) an API key",
    responses={**_KEY_RESPONSES, 404: {"description": "No such key in this tenant"}},
)
async def delete_api_key(key_id: str, principal: AdminPrincipal, auth: Auth) -> Response:
    if not await auth.store.delete_api_key(principal.tenant_id, key_id):
        raise not_found("API key")
    return Response(status_code=204)


__all__ = ["router"]
