"""Auth and tenancy over a real PostgreSQL: register, login, refresh, API keys, dev tenant.

The auth router runs in a small FastAPI app with the gateway's own two error handlers (imported
from its API module, so their JSON bodies are the ones tested), driven by httpx through ASGI; the
store writes to the session's embedded PostgreSQL.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import re
import stat
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import jwt
import pytest
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from pydantic import SecretStr, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from agentbus.gateway.api import _http_error, _validation_error
from agentbus.gateway.auth import (
    AuthService,
    AuthSettings,
    AuthStore,
    CurrentPrincipal,
    Principal,
    TokenService,
    ensure_dev_tenant,
    install_auth,
    owned_or_404,
    router,
    start_auth,
)
from agentbus.gateway.auth.passwords import password_problems
from agentbus.gateway.auth.store import slugify
from agentbus.runtime.settings import Settings

SECRET = "test-jwt-secret-" + "s" * 48
PASSWORD = "Correct-Horse-9"
KEY_PATTERN = re.compile(r"^ab_[A-Za-z0-9_-]{40}$")


def make_app(auth: AuthService | None) -> FastAPI:
    app = FastAPI()
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.include_router(router)
    if auth is not None:
        install_auth(app, auth)
    # A tenant-owned resource, as the other routes hold them.
    app.state.widgets = {}

    @app.get("/api/v1/widgets/{widget_id}")
    async def widget(widget_id: str, principal: CurrentPrincipal) -> dict[str, Any]:
        found: dict[str, Any] = owned_or_404(app.state.widgets.get(widget_id), principal, "Widget")
        return found

    return app


@pytest.fixture(scope="module")
async def pool(postgres_engine: Any) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(postgres_engine.url, min_size=1, max_size=4)
    store = AuthStore(pool)
    await asyncio.gather(store.ensure_schema(), store.ensure_schema())  # idempotent, locked
    yield pool
    await pool.close()


@pytest.fixture(scope="module")
def auth(pool: asyncpg.Pool) -> AuthService:
    tokens = TokenService(SECRET, timedelta(minutes=5), timedelta(days=1))
    return AuthService(store=AuthStore(pool), tokens=tokens)


@pytest.fixture
def app(auth: AuthService) -> FastAPI:
    return make_app(auth)


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as http:
        yield http


def new_email(local: str = "user") -> str:
    return f"{local}-{uuid.uuid4().hex[:10]}@example.com"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def register(
    http: httpx.AsyncClient, email: str | None = None, tenant_name: str | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {"email": email or new_email(), "password": PASSWORD}
    if tenant_name is not None:
        body["tenant_name"] = tenant_name
    response = await http.post("/api/v1/auth/register", json=body)
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


async def login(http: httpx.AsyncClient, email: str, password: str = PASSWORD) -> dict[str, Any]:
    response = await http.post("/api/v1/auth/login", json={"email": email, "password": password})
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


async def signed_in(http: httpx.AsyncClient) -> tuple[dict[str, Any], dict[str, str]]:
    """A new tenant's admin: (register body, auth headers)."""
    reg = await register(http)
    tokens = await login(http, reg["user"]["email"])
    return reg, bearer(tokens["access_token"])


def assert_401(response: httpx.Response, detail: str | None = None) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"] == "Bearer"
    body = response.json()
    assert set(body) == {"detail"}
    if detail is not None:
        assert body["detail"] == detail


# --- register, login, me -----------------------------------------------------------------


async def test_register_login_form_and_json_then_me(client: httpx.AsyncClient) -> None:
    tag = uuid.uuid4().hex[:8]
    email = f"Jane.Doe+{tag}@Example.COM"
    first = await client.post(
        "/api/v1/auth/register",
        json={"email": email, "password": PASSWORD, "tenant_name": f"  Acme Labs {tag}! "},
    )
    assert first.status_code == 201, first.text
    reg = first.json()
    assert set(reg) == {"user", "tenant"}
    assert reg["tenant"]["id"] == f"acme-labs-{tag}"
    assert reg["tenant"]["name"] == f"Acme Labs {tag}!"
    assert reg["user"]["email"] == email.lower()
    assert reg["user"]["role"] == "admin"
    assert reg["user"]["tenant_id"] == reg["tenant"]["id"]
    assert "password" not in first.text and "argon2" not in first.text

    # The same tenant name again: the id takes a suffix.
    second = await register(client, tenant_name=f"Acme Labs {tag}!")
    assert second["tenant"]["id"] == f"acme-labs-{tag}-2"
    # No tenant name: the id comes from the email's local part.
    third = await register(client, email=f"Bob_Smith.{tag}@example.org")
    assert third["tenant"]["id"] == f"bob-smith-{tag}"
    for tenant in (reg, second, third):
        assert re.fullmatch(r"^[a-z0-9][a-z0-9_-]*$", tenant["tenant"]["id"])

    as_json = await client.post(
        "/api/v1/auth/login", json={"email": email.upper(), "password": PASSWORD}
    )
    assert as_json.status_code == 200, as_json.text
    pair = as_json.json()
    assert set(pair) == {
        "access_token",
        "refresh_token",
        "token_type",
        "expires_in",
        "refresh_expires_in",
    }
    assert pair["token_type"] == "bearer"
    assert pair["expires_in"] == 300
    assert as_json.headers["cache-control"] == "no-store"
    claims = jwt.decode(pair["access_token"], SECRET, algorithms=["HS256"], issuer="agentbus")
    assert claims["typ"] == "access"
    assert claims["sub"] == reg["user"]["id"]
    assert claims["tid"] == reg["tenant"]["id"]
    assert 290 <= claims["exp"] - datetime.now(UTC).timestamp() <= 300
    refresh_claims = jwt.decode(pair["refresh_token"], SECRET, algorithms=["HS256"])
    assert refresh_claims["typ"] == "refresh"

    # The OAuth2 password form, as OAuth2PasswordRequestForm and Swagger's "Authorize" send it.
    as_form = await client.post(
        "/api/v1/auth/login",
        data={"grant_type": "password", "username": email, "password": PASSWORD, "scope": ""},
    )
    assert as_form.status_code == 200, as_form.text
    assert as_form.headers["content-type"] == "application/json"
    form_pair = as_form.json()
    assert form_pair["token_type"] == "bearer"
    minimal_form = await client.post(
        "/api/v1/auth/login", data={"username": email, "password": PASSWORD, "client_id": "x"}
    )
    assert minimal_form.status_code == 200, minimal_form.text
    multipart = await client.post(
        "/api/v1/auth/login", files={"username": (None, email), "password": (None, PASSWORD)}
    )
    assert multipart.status_code == 200, multipart.text

    for token in (pair["access_token"], form_pair["access_token"]):
        me = await client.get("/api/v1/users/me", headers=bearer(token))
        assert me.status_code == 200, me.text
        body = me.json()
        assert body["user"]["id"] == reg["user"]["id"]
        assert body["user"]["email"] == email.lower()
        assert body["user"]["last_login_at"] is not None
        assert body["tenant"] == reg["tenant"]
        assert body["auth"] == {"method": "jwt", "scopes": ["admin"], "api_key_id": None}


async def test_login_failures(client: httpx.AsyncClient) -> None:
    reg = await register(client)
    email = reg["user"]["email"]
    wrong = await client.post(
        "/api/v1/auth/login", json={"email": email, "password": PASSWORD + "x"}
    )
    assert_401(wrong, "Incorrect email or password")
    unknown = await client.post(
        "/api/v1/auth/login", json={"email": new_email(), "password": PASSWORD}
    )
    assert_401(unknown, "Incorrect email or password")
    form_wrong = await client.post(
        "/api/v1/auth/login", data={"username": email, "password": "nope"}
    )
    assert_401(form_wrong, "Incorrect email or password")

    plain = await client.post(
        "/api/v1/auth/login", content=b"hello", headers={"content-type": "text/plain"}
    )
    assert plain.status_code == 415
    assert set(plain.json()) == {"detail"}

    malformed = await client.post(
        "/api/v1/auth/login", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert malformed.status_code == 422
    assert malformed.json()["detail"] == "Validation error"

    missing = await client.post("/api/v1/auth/login", data={"username": email})
    assert missing.status_code == 422
    assert [e["field"] for e in missing.json()["errors"]] == ["password"]

    unknown_field = await client.post(
        "/api/v1/auth/login", json={"email": email, "password": PASSWORD, "admin": True}
    )
    assert unknown_field.status_code == 422
    assert unknown_field.json()["errors"] == [
        {"field": "admin", "message": "Extra inputs are not permitted"}
    ]

    bad_grant = await client.post(
        "/api/v1/auth/login",
        data={"grant_type": "client_credentials", "username": email, "password": PASSWORD},
    )
    assert bad_grant.status_code == 422
    assert bad_grant.json()["errors"][0]["field"] == "grant_type"


@pytest.mark.parametrize(
    ("password", "rule"),
    [
        ("Ab1!xyz", "at least 8 characters"),
        ("abcdefg1!", "an uppercase letter"),
        ("ABCDEFG1!", "a lowercase letter"),
        ("Abcdefgh!", "a digit"),
        ("Abcdefgh1", "a special character"),
        ("Abcd efgh1", "a special character"),  # a space is not one
    ],
)
async def test_weak_password_is_422_naming_the_rule(
    client: httpx.AsyncClient, password: str, rule: str
) -> None:
    email = new_email()
    response = await client.post(
        "/api/v1/auth/register", json={"email": email, "password": password}
    )
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["detail"] == "Validation error"
    assert len(body["errors"]) == 1
    assert body["errors"][0]["field"] == "password"
    assert body["errors"][0]["message"] == f"Password must contain {rule}"
    # Nothing was created.
    assert_401(await client.post("/api/v1/auth/login", json={"email": email, "password": password}))


def test_password_problems_lists_every_rule() -> None:
    assert password_problems("") == [
        "at least 8 characters",
        "an uppercase letter",
        "a lowercase letter",
        "a digit",
        "a special character",
    ]
    assert password_problems(PASSWORD) == []
    assert password_problems("Ünïcödé-9") == []


async def test_register_rejects_bad_input(client: httpx.AsyncClient) -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"email": "not-an-email", "password": PASSWORD}, "email"),
        ({"email": new_email(), "password": PASSWORD, "tenant_name": "   "}, "tenant_name"),
        ({"email": new_email(), "password": PASSWORD, "role": "admin"}, "role"),
        ({"email": new_email()}, "password"),
        ({"email": new_email(), "password": "Aa1!" * 40}, "password"),  # too long
    ]
    for body, field in cases:
        response = await client.post("/api/v1/auth/register", json=body)
        assert response.status_code == 422, (body, response.text)
        assert [e["field"] for e in response.json()["errors"]] == [field], response.text


async def test_a_taken_email_answers_like_a_new_one_and_creates_nothing(
    client: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    """No email enumeration (issue 13, point 11): the same status and shape either way."""
    reg = await register(client)
    name = f"Second {uuid.uuid4().hex}"
    again = await client.post(
        "/api/v1/auth/register",
        json={"email": reg["user"]["email"].upper(), "password": PASSWORD, "tenant_name": name},
    )
    fresh = await client.post(
        "/api/v1/auth/register",
        json={"email": new_email(), "password": PASSWORD, "tenant_name": f"Third {name}"},
    )
    assert again.status_code == fresh.status_code == 201, again.text
    assert set(again.json()) == set(fresh.json())
    assert set(again.json()["user"]) == set(fresh.json()["user"])
    assert await pool.fetchval("SELECT count(*) FROM tenants WHERE name = $1", name) == 0
    # The account is untouched: its owner signs in with the first password only.
    assert (await login(client, reg["user"]["email"]))["access_token"]
    wrong = await client.post(
        "/api/v1/auth/login",
        json={"email": reg["user"]["email"], "password": "Another-Horse-77"},
    )
    assert wrong.status_code == 401


async def test_concurrent_registrations_of_one_email(
    client: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    email = new_email()
    body = {"email": email, "password": PASSWORD}
    responses = await asyncio.gather(
        *(client.post("/api/v1/auth/register", json=body) for _ in range(3))
    )
    assert sorted(r.status_code for r in responses) == [201, 201, 201]
    assert await pool.fetchval("SELECT count(*) FROM users WHERE email = $1", email) == 1


# --- tokens ----------------------------------------------------------------------------------


async def test_refresh_rotates_and_rejects_reuse(
    client: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    reg = await register(client)
    first = await login(client, reg["user"]["email"])

    rotated = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]}
    )
    assert rotated.status_code == 200, rotated.text
    second = rotated.json()
    assert second["token_type"] == "bearer"
    assert second["refresh_token"] != first["refresh_token"]
    assert second["access_token"] != first["access_token"]
    me = await client.get("/api/v1/users/me", headers=bearer(second["access_token"]))
    assert me.status_code == 200
    assert me.json()["user"]["id"] == reg["user"]["id"]

    # The spent token again: refused, and its whole family (the successor too) is revoked.
    reused = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]}
    )
    assert_401(reused, "Refresh token was already used; sign in again")
    successor = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": second["refresh_token"]}
    )
    assert_401(successor, "Refresh token is no longer valid")
    rows = await pool.fetch(
        "SELECT used_at, revoked_at FROM refresh_tokens WHERE user_id = $1", reg["user"]["id"]
    )
    assert len(rows) == 2
    assert all(r["revoked_at"] is not None for r in rows)

    # A new sign-in starts a new family, unaffected.
    third = await login(client, reg["user"]["email"])
    ok = await client.post("/api/v1/auth/refresh", json={"refresh_token": third["refresh_token"]})
    assert ok.status_code == 200

    # Each token type only where it belongs.
    access_as_refresh = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": third["access_token"]}
    )
    assert_401(access_as_refresh, "Not a refresh token")
    refresh_as_access = await client.get(
        "/api/v1/users/me", headers=bearer(ok.json()["refresh_token"])
    )
    assert_401(refresh_as_access, "Not an access token")
    garbage = await client.post("/api/v1/auth/refresh", json={"refresh_token": "abc"})
    assert_401(garbage, "Invalid token")
    empty = await client.post("/api/v1/auth/refresh", json={})
    assert empty.status_code == 422
    assert empty.json()["errors"][0]["field"] == "refresh_token"


def _b64(data: dict[str, Any]) -> str:
    raw = json.dumps(data, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


async def test_missing_expired_and_forged_tokens_are_401(
    client: httpx.AsyncClient, auth: AuthService
) -> None:
    reg, headers = await signed_in(client)
    user_id, tenant_id = reg["user"]["id"], reg["tenant"]["id"]
    assert (await client.get("/api/v1/users/me", headers=headers)).status_code == 200

    assert_401(await client.get("/api/v1/users/me"), "Not authenticated")
    assert_401(
        await client.get("/api/v1/users/me", headers={"Authorization": "Basic dXNlcjpwYXNz"}),
        "Not authenticated",
    )
    assert_401(await client.get("/api/v1/users/me", headers=bearer("")), "Not authenticated")
    assert_401(await client.get("/api/v1/users/me", headers=bearer("garbage")), "Invalid token")

    # Expired: issued an hour ago with a 5-minute lifetime, and issued with a lifetime of 0.
    past = datetime.now(UTC) - timedelta(hours=1)
    old = TokenService(SECRET, timedelta(minutes=5), clock=lambda: past)
    expired = old.access(user_id, tenant_id, ("admin",)).token
    assert_401(await client.get("/api/v1/users/me", headers=bearer(expired)), "Token has expired")
    instant = TokenService(SECRET, access_ttl=timedelta(0)).access(user_id, tenant_id).token
    await asyncio.sleep(1.05)
    assert_401(await client.get("/api/v1/users/me", headers=bearer(instant)), "Token has expired")

    # Forged: the right claims signed with another secret.
    claims = {
        "iss": "agentbus",
        "typ": "access",
        "sub": user_id,
        "tid": tenant_id,
        "jti": uuid.uuid4().hex,
        "iat": int(datetime.now(UTC).timestamp()),
        "exp": int((datetime.now(UTC) + timedelta(minutes=5)).timestamp()),
        "scopes": ["admin"],
    }
    forged = jwt.encode(claims, "another-secret-" + "x" * 32, algorithm="HS256")
    assert_401(
        await client.get("/api/v1/users/me", headers=bearer(forged)), "Invalid token signature"
    )
    # Tampered: a genuine token whose tenant claim was edited, signature kept.
    genuine = headers["Authorization"].removeprefix("Bearer ")
    head, payload, signature = genuine.split(".")
    edited = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    edited["tid"] = "someone-else"
    tampered = f"{head}.{_b64(edited)}.{signature}"
    assert_401(
        await client.get("/api/v1/users/me", headers=bearer(tampered)), "Invalid token signature"
    )
    # alg=none and another algorithm with the same secret.
    unsigned = f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(claims)}."
    assert_401(await client.get("/api/v1/users/me", headers=bearer(unsigned)), "Invalid token")
    hs512 = jwt.encode(claims, SECRET, algorithm="HS512")
    assert_401(await client.get("/api/v1/users/me", headers=bearer(hs512)), "Invalid token")
    # Correctly signed but missing a required claim, or from another issuer.
    no_tenant = jwt.encode({k: v for k, v in claims.items() if k != "tid"}, SECRET, "HS256")
    assert_401(await client.get("/api/v1/users/me", headers=bearer(no_tenant)), "Invalid token")
    foreign = jwt.encode({**claims, "iss": "elsewhere"}, SECRET, "HS256")
    assert_401(await client.get("/api/v1/users/me", headers=bearer(foreign)), "Invalid token")
    # A JWT where only API keys go.
    assert_401(
        await client.get("/api/v1/users/me", headers={"x-api-key": genuine}), "Invalid API key"
    )
    # Correctly signed for a user that does not exist.
    ghost = auth.tokens.access(uuid.uuid4().hex, tenant_id).token
    assert_401(await client.get("/api/v1/users/me", headers=bearer(ghost)), "User no longer exists")


def test_openapi_documents_both_login_bodies_and_schemes(app: FastAPI) -> None:
    spec = app.openapi()
    login_body = spec["paths"]["/api/v1/auth/login"]["post"]["requestBody"]["content"]
    assert set(login_body) == {"application/json", "application/x-www-form-urlencoded"}
    schemes = spec["components"]["securitySchemes"]
    assert schemes["bearer"]["flows"]["password"]["tokenUrl"] == "/api/v1/auth/login"
    assert schemes["api_key"] == {
        "type": "apiKey",
        "description": "An API key (ab_...)",
        "in": "header",
        "name": "x-api-key",
    }
    assert spec["paths"]["/api/v1/users/me"]["get"]["security"] == [
        {"bearer": []},
        {"api_key": []},
    ]


async def test_auth_not_installed_is_503() -> None:
    transport = httpx.ASGITransport(app=make_app(None))
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as http:
        response = await http.get("/api/v1/users/me", headers=bearer("x"))
    assert response.status_code == 503
    assert set(response.json()) == {"detail"}


# --- API keys --------------------------------------------------------------------------------


async def test_api_keys_lifecycle_and_tenancy(
    client: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    reg_a, admin_a = await signed_in(client)
    _, admin_b = await signed_in(client)
    tenant_a = reg_a["tenant"]["id"]

    created = await client.post("/api/v1/api-keys", json={"name": " ci "}, headers=admin_a)
    assert created.status_code == 201, created.text
    assert created.headers["cache-control"] == "no-store"
    key = created.json()
    secret = key["key"]
    assert KEY_PATTERN.fullmatch(secret)
    assert set(key) == {"id", "name", "prefix", "scopes", "created_at", "last_used_at", "key"}
    assert key["name"] == "ci"
    assert key["scopes"] == []
    assert key["last_used_at"] is None
    assert secret.startswith(key["prefix"]) and len(key["prefix"]) < len(secret) // 3

    # Shown once: lists never carry the secret.
    listed = await client.get("/api/v1/api-keys", headers=admin_a)
    assert listed.status_code == 200
    assert secret not in listed.text
    (item,) = [i for i in listed.json()["items"] if i["id"] == key["id"]]
    assert set(item) == {"id", "name", "prefix", "scopes", "created_at", "last_used_at"}

    # Stored as a SHA-256, nowhere in clear.
    row = await pool.fetchrow("SELECT * FROM api_keys WHERE key_id = $1", key["id"])
    assert row["tenant_id"] == tenant_a
    assert row["key_hash"] == hashlib.sha256(secret.encode()).hexdigest()
    assert all(secret not in str(value) for value in dict(row).values())

    # Accepted as a bearer token and as x-api-key.
    for headers in (bearer(secret), {"x-api-key": secret}):
        me = await client.get("/api/v1/users/me", headers=headers)
        assert me.status_code == 200, me.text
        assert me.json()["user"] is None
        assert me.json()["tenant"]["id"] == tenant_a
        assert me.json()["auth"] == {"method": "api_key", "scopes": [], "api_key_id": key["id"]}
    listed = await client.get("/api/v1/api-keys", headers=admin_a)
    (item,) = [i for i in listed.json()["items"] if i["id"] == key["id"]]
    assert item["last_used_at"] is not None

    # A key without the admin scope cannot manage keys; one with it can.
    forbidden = await client.post("/api/v1/api-keys", json={"name": "x"}, headers=bearer(secret))
    assert forbidden.status_code == 403
    assert set(forbidden.json()) == {"detail"}
    admin_key = await client.post(
        "/api/v1/api-keys", json={"name": "ops", "scopes": ["admin"]}, headers=admin_a
    )
    assert admin_key.status_code == 201
    by_key = await client.get("/api/v1/api-keys", headers={"x-api-key": admin_key.json()["key"]})
    assert by_key.status_code == 200
    assert {i["id"] for i in by_key.json()["items"]} == {key["id"], admin_key.json()["id"]}

    # Another tenant sees none of it and cannot delete it: 404, as for an unknown id.
    listed_b = await client.get("/api/v1/api-keys", headers=admin_b)
    assert listed_b.json() == {"items": []}
    stolen = await client.delete(f"/api/v1/api-keys/{key['id']}", headers=admin_b)
    assert stolen.status_code == 404
    assert stolen.json() == {"detail": "API key not found"}
    unknown = await client.delete(f"/api/v1/api-keys/{uuid.uuid4().hex}", headers=admin_a)
    assert unknown.status_code == 404
    assert (await client.get("/api/v1/users/me", headers=bearer(secret))).status_code == 200

    # Deleted: the key stops working at once.
    deleted = await client.delete(f"/api/v1/api-keys/{key['id']}", headers=admin_a)
    assert deleted.status_code == 204
    assert deleted.content == b""
    assert_401(await client.get("/api/v1/users/me", headers=bearer(secret)), "Invalid API key")
    assert_401(
        await client.get("/api/v1/users/me", headers={"x-api-key": secret}), "Invalid API key"
    )
    again = await client.delete(f"/api/v1/api-keys/{key['id']}", headers=admin_a)
    assert again.status_code == 404

    # Well-formed but unknown, or malformed keys.
    assert_401(
        await client.get("/api/v1/users/me", headers={"x-api-key": "ab_" + "A" * 40}),
        "Invalid API key",
    )
    assert_401(
        await client.get("/api/v1/users/me", headers={"x-api-key": "sk-123"}), "Invalid API key"
    )
    # Managing keys needs credentials at all; bad bodies are 422 in the usual shape.
    assert_401(await client.get("/api/v1/api-keys"), "Not authenticated")
    for body, field in (
        ({"name": "x", "scopes": ["root"]}, "scopes.0"),
        ({"name": ""}, "name"),
        ({"name": "x", "secret": "mine"}, "secret"),
    ):
        bad = await client.post("/api/v1/api-keys", json=body, headers=admin_a)
        assert bad.status_code == 422, bad.text
        assert [e["field"] for e in bad.json()["errors"]] == [field]


async def test_other_tenants_resources_are_404(client: httpx.AsyncClient, app: FastAPI) -> None:
    reg_a, admin_a = await signed_in(client)
    _, admin_b = await signed_in(client)
    app.state.widgets["w1"] = {"tenant_id": reg_a["tenant"]["id"], "name": "mine"}

    mine = await client.get("/api/v1/widgets/w1", headers=admin_a)
    assert mine.status_code == 200
    assert mine.json()["name"] == "mine"
    theirs = await client.get("/api/v1/widgets/w1", headers=admin_b)
    assert theirs.status_code == 404
    assert theirs.json() == {"detail": "Widget not found"}
    missing = await client.get("/api/v1/widgets/nope", headers=admin_a)
    assert missing.json() == {"detail": "Widget not found"}


async def test_owned_or_404_accepts_objects_dicts_and_records(pool: asyncpg.Pool) -> None:
    from fastapi import HTTPException

    @dataclass
    class Thing:
        tenant_id: str

    principal = Principal(tenant_id="acme")
    record = await pool.fetchrow("SELECT 'acme' AS tenant_id, 1 AS n")
    for resource in (Thing("acme"), {"tenant_id": "acme"}, record):
        assert owned_or_404(resource, principal) is resource
    for resource in (Thing("other"), {"tenant_id": "other"}, {"name": "x"}, None, 3):
        with pytest.raises(HTTPException) as caught:
            owned_or_404(resource, principal, "Thread")
        assert caught.value.status_code == 404
        assert caught.value.detail == "Thread not found"


# --- dev tenant and settings -----------------------------------------------------------------


async def test_dev_tenant_and_key_idempotent(
    client: httpx.AsyncClient, auth: AuthService, tmp_path: Path
) -> None:
    data_dir = tmp_path / "var"  # does not exist yet
    path = data_dir / "dev-api-key"
    first = await ensure_dev_tenant(auth.store, data_dir)
    assert KEY_PATTERN.fullmatch(first)
    assert path.read_text().strip() == first
    assert stat.S_IMODE(path.stat().st_mode) == 0o600

    # Restarts (even concurrent ones) reuse the key.
    again = await asyncio.gather(*(ensure_dev_tenant(auth.store, data_dir) for _ in range(3)))
    assert again == [first] * 3
    path.chmod(0o644)
    assert await ensure_dev_tenant(auth.store, data_dir) == first
    assert stat.S_IMODE(path.stat().st_mode) == 0o600

    me = await client.get("/api/v1/users/me", headers={"x-api-key": first})
    assert me.status_code == 200, me.text
    assert me.json()["tenant"]["id"] == "dev"
    assert me.json()["auth"]["scopes"] == ["admin"]
    keys = await client.get("/api/v1/api-keys", headers={"x-api-key": first})
    assert [k["name"] for k in keys.json()["items"]] == ["dev"]

    # The file lost: a new key, and the old one is revoked.
    path.unlink()
    rotated = await ensure_dev_tenant(auth.store, data_dir)
    assert rotated != first
    assert path.read_text().strip() == rotated
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert_401(await client.get("/api/v1/users/me", headers={"x-api-key": first}))
    # The file holds something that is not a valid key: rotated as well.
    path.write_text("ab_" + "x" * 40 + "\n")
    replaced = await ensure_dev_tenant(auth.store, data_dir)
    assert replaced not in (first, rotated)
    assert path.read_text().strip() == replaced
    keys = await client.get("/api/v1/api-keys", headers={"x-api-key": replaced})
    assert len(keys.json()["items"]) == 1

    # Registration never hands out the reserved `dev` id.
    reg = await register(client, email=f"dev@{uuid.uuid4().hex[:8]}.example.com")
    assert reg["tenant"]["id"].startswith("dev-")


def test_slugify() -> None:
    assert slugify("Acme, Inc.") == "acme-inc"
    assert slugify("Crème brûlée") == "creme-brulee"
    assert slugify("__x__") == "x"
    assert slugify("日本") == ""
    assert len(slugify("a" * 200)) <= 40


def test_auth_settings_secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = AuthSettings()
    assert settings.jwt_secret is None
    assert (settings.access_token_minutes, settings.refresh_token_days) == (30, 14)
    with pytest.raises(ValueError, match="resolved"):
        TokenService.from_settings(settings)

    # Dev: a random secret generated once under data_dir, 0600, stable across restarts.
    resolved = settings.resolved(tmp_path)
    assert resolved.jwt_secret is not None
    secret = resolved.jwt_secret.get_secret_value()
    assert len(secret) >= 32
    path = tmp_path / "jwt-secret"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert AuthSettings().resolved(tmp_path).jwt_secret == resolved.jwt_secret
    # Configured: used as is, nothing written.
    explicit = AuthSettings(jwt_secret=SecretStr(SECRET)).resolved(tmp_path / "other")
    assert explicit.jwt_secret is not None
    assert explicit.jwt_secret.get_secret_value() == SECRET
    assert not (tmp_path / "other").exists()
    with pytest.raises(ValidationError):
        AuthSettings(jwt_secret=SecretStr("short"))
    with pytest.raises(ValidationError):
        AuthSettings(access_token_minutes=0)

    # As the gateway's settings read them from the environment.
    class GatewayLike(Settings, AuthSettings):
        pass

    monkeypatch.setenv("AGENTBUS_JWT_SECRET", SECRET)
    monkeypatch.setenv("AGENTBUS_ACCESS_TOKEN_MINUTES", "7")
    monkeypatch.setenv("AGENTBUS_REFRESH_TOKEN_DAYS", "2")
    tokens = TokenService.from_settings(GatewayLike())
    assert tokens.access_ttl == timedelta(minutes=7)
    assert tokens.refresh_ttl == timedelta(days=2)


async def test_start_auth_wires_an_app(pool: asyncpg.Pool, tmp_path: Path) -> None:
    app = make_app(None)
    service = await start_auth(app, pool, AuthSettings(), tmp_path, dev_tenant=True)
    assert app.state.auth is service
    dev_key = (tmp_path / "dev-api-key").read_text().strip()
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as http:
        me = await http.get("/api/v1/users/me", headers=bearer(dev_key))
        assert me.status_code == 200
        assert me.json()["tenant"]["id"] == "dev"
        reg = await register(http)
        tokens = await login(http, reg["user"]["email"])
        me = await http.get("/api/v1/users/me", headers=bearer(tokens["access_token"]))
        assert me.status_code == 200
    # Signed with the secret kept under data_dir.
    secret = (tmp_path / "jwt-secret").read_text().strip()
    assert jwt.decode(tokens["access_token"], secret, algorithms=["HS256"])["typ"] == "access"
    assert service.tokens.access_ttl == timedelta(minutes=30)
