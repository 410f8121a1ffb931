"""Tenants, users, API keys and refresh tokens in PostgreSQL (asyncpg).

Every row belongs to a tenant. Tenant ids are slugs (`^[a-z0-9][a-z0-9_-]*$`) because they travel
in NATS subjects and object keys; user and key ids are random hex (`new_id`).
"""

from __future__ import annotations

import enum
import re
import secrets
import unicodedata
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import asyncpg

from agentbus.contracts import new_id
from agentbus.runtime.migrations import Migration
from agentbus.runtime.stores.schema import LockKey, migrate

from .tokens import display_prefix, hash_api_key, is_api_key, new_api_key, write_private

TENANT_ID_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
TENANT_ID_MAX = 48
# Slugs a registration never receives: `dev` belongs to `agentbus up`, the rest read as system.
RESERVED_TENANT_IDS = frozenset({"dev", "admin", "system", "root", "api", "agentbus", "default"})

DEV_TENANT_ID = "dev"
DEV_KEY_NAME = "dev"
DEV_KEY_FILE = "dev-api-key"

SCHEMA = r"""
CREATE TABLE IF NOT EXISTS tenants (
    tenant_id      text PRIMARY KEY CHECK (tenant_id ~ '^[a-z0-9][a-z0-9_-]*$'),
    name           text NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS users (
    user_id        text PRIMARY KEY,
    tenant_id      text NOT NULL REFERENCES tenants (tenant_id) ON DELETE CASCADE,
    email          text NOT NULL,
    password_hash  text NOT NULL,
    role           text NOT NULL DEFAULT 'member' CHECK (role IN ('admin', 'member')),
    disabled       boolean NOT NULL DEFAULT false,
    created_at     timestamptz NOT NULL DEFAULT now(),
    last_login_at  timestamptz
);
CREATE UNIQUE INDEX IF NOT EXISTS users_email_unique ON users (lower(email));
CREATE INDEX IF NOT EXISTS users_tenant ON users (tenant_id);
CREATE TABLE IF NOT EXISTS api_keys (
    key_id         text PRIMARY KEY,
    tenant_id      text NOT NULL REFERENCES tenants (tenant_id) ON DELETE CASCADE,
    name           text NOT NULL,
    prefix         text NOT NULL,
    key_hash       text NOT NULL UNIQUE,
    scopes         text[] NOT NULL DEFAULT '{}',
    created_by     text REFERENCES users (user_id) ON DELETE SET NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    last_used_at   timestamptz
);
CREATE INDEX IF NOT EXISTS api_keys_tenant ON api_keys (tenant_id, created_at);
CREATE TABLE IF NOT EXISTS refresh_tokens (
    jti            text PRIMARY KEY,
    family_id      text NOT NULL,
    user_id        text NOT NULL REFERENCES users (user_id) ON DELETE CASCADE,
    tenant_id      text NOT NULL,
    issued_at      timestamptz NOT NULL DEFAULT now(),
    expires_at     timestamptz NOT NULL,
    used_at        timestamptz,
    revoked_at     timestamptz
);
CREATE INDEX IF NOT EXISTS refresh_tokens_family ON refresh_tokens (family_id);
CREATE INDEX IF NOT EXISTS refresh_tokens_expiry ON refresh_tokens (expires_at);
"""

MIGRATIONS = (Migration(1, "tenants, users, API keys and refresh tokens", (SCHEMA,)),)

# last_used_at is written at most this often per key, not on every request.
LAST_USED_GRANULARITY = "1 minute"


@dataclass(frozen=True)
class Tenant:
    tenant_id: str
    name: str
    created_at: datetime


@dataclass(frozen=True)
class User:
    user_id: str
    tenant_id: str
    email: str
    role: str
    disabled: bool
    created_at: datetime
    last_login_at: datetime | None
    password_hash: str = field(default="", repr=False)

    @property
    def scopes(self) -> tuple[str, ...]:
        return ("admin",) if self.role == "admin" else ()


@dataclass(frozen=True)
class ApiKey:
    key_id: str
    tenant_id: str
    name: str
    prefix: str
    scopes: tuple[str, ...]
    created_by: str | None
    created_at: datetime
    last_used_at: datetime | None


class EmailTaken(Exception):
    """A user with this email already exists."""


class RefreshOutcome(enum.Enum):
    ROTATED = "rotated"
    REUSED = "reused"  # already used once: the whole family is now revoked
    INVALID = "invalid"  # unknown, revoked, expired, or its user is gone or disabled


def slugify(text: str) -> str:
    """A tenant-id-shaped slug of `text` ('' when nothing usable remains)."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-_")
    return slug[: TENANT_ID_MAX - 8].rstrip("-_")


def _tenant(row: asyncpg.Record) -> Tenant:
    return Tenant(row["tenant_id"], row["name"], row["created_at"])


def _user(row: asyncpg.Record) -> User:
    return User(
        user_id=row["user_id"],
        tenant_id=row["tenant_id"],
        email=row["email"],
        role=row["role"],
        disabled=row["disabled"],
        created_at=row["created_at"],
        last_login_at=row["last_login_at"],
        password_hash=row["password_hash"],
    )


def _api_key(row: asyncpg.Record) -> ApiKey:
    return ApiKey(
        key_id=row["key_id"],
        tenant_id=row["tenant_id"],
        name=row["name"],
        prefix=row["prefix"],
        scopes=tuple(row["scopes"]),
        created_by=row["created_by"],
        created_at=row["created_at"],
        last_used_at=row["last_used_at"],
    )


_KEY_COLUMNS = "key_id, tenant_id, name, prefix, scopes, created_by, created_at, last_used_at"


class AuthStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def ensure_schema(self) -> None:
        """Create the tables if missing. Serialised by an advisory lock: replicas start together."""
        await migrate(self.pool, LockKey.AUTH, MIGRATIONS)

    @asynccontextmanager
    async def advisory_lock(self, key: int) -> AsyncIterator[None]:
        """A cluster-wide mutex (session-level advisory lock) for the duration of the block."""
        async with self.pool.acquire() as conn:
            await conn.execute("SELECT pg_advisory_lock($1)", key)
            try:
                yield
            finally:
                await conn.execute("SELECT pg_advisory_unlock($1)", key)

    # --- tenants and users ---------------------------------------------------------------

    async def tenant(self, tenant_id: str) -> Tenant | None:
        row = await self.pool.fetchrow(
            "SELECT tenant_id, name, created_at FROM tenants WHERE tenant_id = $1", tenant_id
        )
        return _tenant(row) if row else None

    async def ensure_tenant(self, tenant_id: str, name: str) -> Tenant:
        """The tenant with this id, created if missing (idempotent)."""
        if not TENANT_ID_PATTERN.fullmatch(tenant_id):
            raise ValueError(f"invalid tenant id {tenant_id!r}")
        await self.pool.execute(
            "INSERT INTO tenants (tenant_id, name) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            tenant_id,
            name,
        )
        tenant = await self.tenant(tenant_id)
        assert tenant is not None
        return tenant

    async def _insert_tenant(self, conn: asyncpg.Connection, base: str, name: str) -> Tenant:
        """A new tenant whose id is `base`, or `base-2`, `base-3`... when taken."""
        base = base or "tenant"
        candidates = [] if base in RESERVED_TENANT_IDS else [base]
        candidates += [f"{base}-{n}" for n in range(2, 10)]
        candidates += [f"{base}-{secrets.token_hex(3)}" for _ in range(5)]
        for candidate in candidates:
            row = await conn.fetchrow(
                "INSERT INTO tenants (tenant_id, name) VALUES ($1, $2)"
                " ON CONFLICT (tenant_id) DO NOTHING RETURNING tenant_id, name, created_at",
                candidate,
                name,
            )
            if row is not None:
                return _tenant(row)
        raise RuntimeError(f"could not find a free tenant id for {base!r}")

    async def register(
        self, email: str, password_hash: str, tenant_name: str, slug: str
    ) -> tuple[User, Tenant]:
        """A new tenant (id from `slug`, suffixed if taken) and its first user, an admin.

        One transaction: a taken email (EmailTaken) leaves no tenant behind.
        """
        async with self.pool.acquire() as conn, conn.transaction():
            taken = await conn.fetchval("SELECT 1 FROM users WHERE lower(email) = lower($1)", email)
            if taken:
                raise EmailTaken(email)
            tenant = await self._insert_tenant(conn, slug, tenant_name)
            try:
                row = await conn.fetchrow(
                    "INSERT INTO users (user_id, tenant_id, email, password_hash, role)"
                    " VALUES ($1, $2, $3, $4, 'admin') RETURNING *",
                    new_id(),
                    tenant.tenant_id,
                    email,
                    password_hash,
                )
            except asyncpg.UniqueViolationError:  # registered concurrently
                raise EmailTaken(email) from None
        return _user(row), tenant

    async def user(self, user_id: str) -> User | None:
        row = await self.pool.fetchrow("SELECT * FROM users WHERE user_id = $1", user_id)
        return _user(row) if row else None

    async def user_by_email(self, email: str) -> User | None:
        row = await self.pool.fetchrow("SELECT * FROM users WHERE lower(email) = lower($1)", email)
        return _user(row) if row else None

    async def record_login(self, user_id: str, new_password_hash: str | None = None) -> None:
        await self.pool.execute(
            "UPDATE users SET last_login_at = now(),"
            " password_hash = coalesce($2, password_hash) WHERE user_id = $1",
            user_id,
            new_password_hash,
        )

    # --- refresh tokens ------------------------------------------------------------------

    async def add_refresh_token(
        self, jti: str, family_id: str, user_id: str, tenant_id: str, expires_at: datetime
    ) -> None:
        await self.pool.execute(
            "INSERT INTO refresh_tokens (jti, family_id, user_id, tenant_id, expires_at)"
            " VALUES ($1, $2, $3, $4, $5)",
            jti,
            family_id,
            user_id,
            tenant_id,
            expires_at,
        )

    async def rotate_refresh_token(
        self, old_jti: str, new_jti: str, new_expires_at: datetime
    ) -> tuple[RefreshOutcome, User | None]:
        """Spend refresh token `old_jti` and record its successor `new_jti` (same family).

        A token presented a second time means it leaked (or a client retried): the whole family,
        including successors already issued, is revoked and the user must sign in again.
        """
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                "SELECT r.family_id, r.used_at, r.revoked_at, r.expires_at <= now() AS expired,"
                " u.* FROM refresh_tokens r JOIN users u USING (user_id)"
                " WHERE r.jti = $1 FOR UPDATE OF r",
                old_jti,
            )
            if row is None or row["revoked_at"] is not None or row["expired"]:
                return RefreshOutcome.INVALID, None
            if row["used_at"] is not None:
                await conn.execute(
                    "UPDATE refresh_tokens SET revoked_at = now()"
                    " WHERE family_id = $1 AND revoked_at IS NULL",
                    row["family_id"],
                )
                return RefreshOutcome.REUSED, None
            user = _user(row)
            if user.disabled:
                return RefreshOutcome.INVALID, None
            await conn.execute("UPDATE refresh_tokens SET used_at = now() WHERE jti = $1", old_jti)
            await conn.execute(
                "INSERT INTO refresh_tokens (jti, family_id, user_id, tenant_id, expires_at)"
                " VALUES ($1, $2, $3, $4, $5)",
                new_jti,
                row["family_id"],
                user.user_id,
                user.tenant_id,
                new_expires_at,
            )
        return RefreshOutcome.ROTATED, user

    async def revoke_refresh_family(self, family_id: str) -> None:
        await self.pool.execute(
            "UPDATE refresh_tokens SET revoked_at = now()"
            " WHERE family_id = $1 AND revoked_at IS NULL",
            family_id,
        )

    async def purge_expired_refresh_tokens(self) -> int:
        result = await self.pool.execute("DELETE FROM refresh_tokens WHERE expires_at < now()")
        return int(str(result).rsplit(" ", 1)[-1])

    # --- API keys ------------------------------------------------------------------------

    async def create_api_key(
        self,
        tenant_id: str,
        name: str,
        scopes: Sequence[str] = (),
        created_by: str | None = None,
    ) -> tuple[ApiKey, str]:
        """A new key and its secret, which is returned here once and never stored."""
        secret = new_api_key()
        row = await self.pool.fetchrow(
            "INSERT INTO api_keys (key_id, tenant_id, name, prefix, key_hash, scopes, created_by)"
            f" VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {_KEY_COLUMNS}",
            new_id(),
            tenant_id,
            name,
            display_prefix(secret),
            hash_api_key(secret),
            list(scopes),
            created_by,
        )
        return _api_key(row), secret

    async def api_keys(self, tenant_id: str) -> list[ApiKey]:
        rows = await self.pool.fetch(
            f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE tenant_id = $1 ORDER BY created_at, key_id",
            tenant_id,
        )
        return [_api_key(r) for r in rows]

    async def delete_api_key(self, tenant_id: str, key_id: str) -> bool:
        """Delete a key of this tenant; False when there is none (including another tenant's)."""
        result = await self.pool.execute(
            "DELETE FROM api_keys WHERE tenant_id = $1 AND key_id = $2", tenant_id, key_id
        )
        return str(result) == "DELETE 1"

    async def api_key_by_secret(self, secret: str, *, touch: bool = True) -> ApiKey | None:
        """The key whose secret this is, looked up by hash (no secret comparison to time)."""
        if not is_api_key(secret):
            return None
        row = await self.pool.fetchrow(
            f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE key_hash = $1", hash_api_key(secret)
        )
        if row is None:
            return None
        key = _api_key(row)
        if touch:
            await self.pool.execute(
                "UPDATE api_keys SET last_used_at = now() WHERE key_id = $1 AND (last_used_at"
                f" IS NULL OR last_used_at < now() - interval '{LAST_USED_GRANULARITY}')",
                key.key_id,
            )
        return key

    async def delete_api_keys_named(self, tenant_id: str, name: str) -> int:
        result = await self.pool.execute(
            "DELETE FROM api_keys WHERE tenant_id = $1 AND name = $2", tenant_id, name
        )
        return int(str(result).rsplit(" ", 1)[-1])


def _read_key_file(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8").strip()
    except (FileNotFoundError, UnicodeDecodeError, IsADirectoryError):
        return None


async def ensure_dev_tenant(store: AuthStore, data_dir: Path | str) -> str:
    """Tenant `dev` and an admin API key for it, kept in `<data_dir>/dev-api-key` (0600).

    Idempotent: a key in the file that is still valid for `dev` is kept; otherwise the old dev
    keys are deleted and a new one is written (rotation). Serialised across processes.
    """
    path = Path(data_dir) / DEV_KEY_FILE
    async with store.advisory_lock(LockKey.DEV_TENANT):
        await store.ensure_tenant(DEV_TENANT_ID, "Development")
        current = _read_key_file(path)
        if current:
            key = await store.api_key_by_secret(current, touch=False)
            if key is not None and key.tenant_id == DEV_TENANT_ID:
                path.chmod(0o600)
                return current
        await store.delete_api_keys_named(DEV_TENANT_ID, DEV_KEY_NAME)
        _, secret = await store.create_api_key(DEV_TENANT_ID, DEV_KEY_NAME, ("admin",))
        write_private(path, secret)
        return secret
