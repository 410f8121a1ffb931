"""Credentials the gateway issues: JWT access/refresh tokens (HS256) and tenant API keys.

Access tokens are stateless (checked by signature and expiry only). Refresh tokens are also
recorded in PostgreSQL by their `jti`, so each can be used once (see `AuthStore`). API keys are
random strings (`ab_` + 40 URL-safe characters) of which only the SHA-256 is stored.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import jwt
from pydantic import BaseModel, Field, SecretStr, field_validator

from agentbus.contracts import new_id

ALGORITHM = "HS256"
ISSUER = "agentbus"
MIN_SECRET_LENGTH = 32  # RFC 7518 §3.2: an HS256 key at least as long as the hash output
JWT_SECRET_FILE = "jwt-secret"

TokenType = Literal["access", "refresh"]

# Words of the placeholder secrets in deploy/ (compose .env.example, the kustomize dev overlay)
# and of their usual kind: long enough for the length check, but public.
PLACEHOLDER_MARKS = ("change-me", "changeme", "dev-only", "not-for-real-use", "placeholder")


def is_placeholder(secret: str) -> bool:
    lowered = secret.lower()
    return any(mark in lowered for mark in PLACEHOLDER_MARKS)


class AuthSettings(BaseModel):
    """Auth settings; `GatewaySettings` exposes them as `AGENTBUS_JWT_SECRET` and so on."""

    jwt_secret: SecretStr | None = Field(
        default=None,
        description=(
            "HS256 signing secret, 32+ characters; the same on every gateway replica. "
            "Unset: a random one is generated once and kept in <data_dir>/jwt-secret (dev only)"
        ),
    )
    access_token_minutes: int = Field(default=30, ge=1, le=24 * 60)
    refresh_token_days: int = Field(default=14, ge=1, le=365)

    @field_validator("jwt_secret")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < MIN_SECRET_LENGTH:
            raise ValueError(f"must be at least {MIN_SECRET_LENGTH} characters")
        if value is not None and is_placeholder(value.get_secret_value()):
            raise ValueError(
                "is a published placeholder; set a random secret (e.g. `openssl rand -base64 48`)"
                " or leave it unset under `agentbus up`"
            )
        return value

    def resolved(self, data_dir: Path) -> AuthSettings:
        """These settings with a secret: the configured one, else the one kept under data_dir."""
        if self.jwt_secret is not None:
            return self
        secret = load_or_create_secret(Path(data_dir) / JWT_SECRET_FILE)
        return self.model_copy(update={"jwt_secret": SecretStr(secret)})


def write_private(path: Path, text: str, *, replace: bool = True) -> bool:
    """Write `text` to `path` with mode 0600, atomically. With replace=False an existing file
    wins (returns False) — safe when several processes race to create the same file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            os.fchmod(f.fileno(), 0o600)
            f.write(text + "\n")
            f.flush()
            os.fsync(f.fileno())
        if replace:
            os.replace(tmp, path)
            return True
        try:
            os.link(tmp, path)  # atomic, and fails when the file already exists
        except FileExistsError:
            return False
        return True
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def load_or_create_secret(path: Path) -> str:
    """A stable random secret kept in `path` (0600): read it, or create it once."""
    if not path.exists():
        write_private(path, secrets.token_urlsafe(48), replace=False)
    secret = path.read_text(encoding="utf-8").strip()
    if len(secret) < MIN_SECRET_LENGTH:
        raise ValueError(
            f"{path}: the JWT secret must be at least {MIN_SECRET_LENGTH} characters; "
            "delete the file to generate a new one"
        )
    return secret


class TokenError(Exception):
    """A token that cannot be accepted; the message is safe to show to the client."""


@dataclass(frozen=True)
class Claims:
    sub: str  # user id
    tid: str  # tenant id
    typ: TokenType
    jti: str
    exp: datetime
    scopes: tuple[str, ...] = ()
    fam: str | None = None  # refresh tokens: the login session they descend from


@dataclass(frozen=True)
class IssuedToken:
    token: str
    jti: str
    expires_at: datetime
    family: str | None = None


def utcnow() -> datetime:
    return datetime.now(UTC)


class TokenService:
    """Signs and checks the gateway's JWTs."""

    def __init__(
        self,
        secret: str,
        access_ttl: timedelta = timedelta(minutes=30),
        refresh_ttl: timedelta = timedelta(days=14),
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        if len(secret) < MIN_SECRET_LENGTH:
            raise ValueError(f"the JWT secret must be at least {MIN_SECRET_LENGTH} characters")
        self._secret = secret
        self.access_ttl = access_ttl
        self.refresh_ttl = refresh_ttl
        self.clock = clock

    def keyed_id(self, purpose: str, *parts: str) -> str:
        """A stable id that reveals nothing without the secret (HMAC-SHA256, 24 hex digits):
        an id derived from a tenant and a file name must not let anyone test for that name."""
        message = "\x00".join((purpose, *parts)).encode()
        return hmac.new(self._secret.encode(), message, hashlib.sha256).hexdigest()[:24]

    @classmethod
    def from_settings(cls, settings: AuthSettings) -> TokenService:
        if settings.jwt_secret is None:
            raise ValueError("no JWT secret: call AuthSettings.resolved(data_dir) first")
        return cls(
            settings.jwt_secret.get_secret_value(),
            access_ttl=timedelta(minutes=settings.access_token_minutes),
            refresh_ttl=timedelta(days=settings.refresh_token_days),
        )

    def _sign(
        self, typ: TokenType, user_id: str, tenant_id: str, ttl: timedelta, extra: dict[str, Any]
    ) -> IssuedToken:
        now = self.clock()
        jti = new_id()
        expires_at = now + ttl
        claims = {
            "iss": ISSUER,
            "typ": typ,
            "sub": user_id,
            "tid": tenant_id,
            "jti": jti,
            "iat": int(now.timestamp()),
            "exp": int(expires_at.timestamp()),
            **extra,
        }
        token = jwt.encode(claims, self._secret, algorithm=ALGORITHM)
        return IssuedToken(token, jti, expires_at, extra.get("fam"))

    def access(self, user_id: str, tenant_id: str, scopes: tuple[str, ...] = ()) -> IssuedToken:
        return self._sign("access", user_id, tenant_id, self.access_ttl, {"scopes": list(scopes)})

    def refresh(self, user_id: str, tenant_id: str, family: str | None = None) -> IssuedToken:
        return self._sign(
            "refresh", user_id, tenant_id, self.refresh_ttl, {"fam": family or new_id()}
        )

    def decode(self, token: str, typ: TokenType) -> Claims:
        """The claims of a valid token of type `typ`; TokenError otherwise."""
        try:
            raw = jwt.decode(
                token,
                self._secret,
                algorithms=[ALGORITHM],
                issuer=ISSUER,
                # iat is informative only: a replica whose clock runs a little ahead must not
                # make tokens "not yet valid" on the others.
                options={
                    "require": ["exp", "iat", "sub", "tid", "typ", "jti"],
                    "verify_iat": False,
                },
            )
        except jwt.ExpiredSignatureError:
            raise TokenError("Token has expired") from None
        except jwt.InvalidSignatureError:
            raise TokenError("Invalid token signature") from None
        except jwt.PyJWTError:
            raise TokenError("Invalid token") from None
        if raw.get("typ") != typ:
            raise TokenError(f"Not an {typ} token" if typ == "access" else f"Not a {typ} token")
        scopes = raw.get("scopes", [])
        fam = raw.get("fam")
        if not (
            isinstance(raw["sub"], str)
            and isinstance(raw["tid"], str)
            and isinstance(raw["jti"], str)
            and isinstance(scopes, list)
            and all(isinstance(s, str) for s in scopes)
            and (fam is None or isinstance(fam, str))
            and (typ == "access" or fam is not None)
        ):
            raise TokenError("Invalid token")
        return Claims(
            sub=raw["sub"],
            tid=raw["tid"],
            typ=typ,
            jti=raw["jti"],
            exp=datetime.fromtimestamp(raw["exp"], UTC),
            scopes=tuple(scopes),
            fam=fam,
        )


# --- API keys ---------------------------------------------------------------------------------

API_KEY_PREFIX = "ab_"
API_KEY_PATTERN = re.compile(r"^ab_[A-Za-z0-9_-]{40}$")
DISPLAY_PREFIX_LENGTH = len(API_KEY_PREFIX) + 8


def new_api_key() -> str:
    """`ab_` + 40 URL-safe characters (240 random bits)."""
    return API_KEY_PREFIX + secrets.token_urlsafe(30)


def is_api_key(value: str) -> bool:
    return API_KEY_PATTERN.fullmatch(value) is not None


def hash_api_key(key: str) -> str:
    """SHA-256 (hex): enough for a random 240-bit key, and lets the store look keys up by hash."""
    return hashlib.sha256(key.encode()).hexdigest()


def display_prefix(key: str) -> str:
    """The start of a key that lists may show so that people can tell their keys apart."""
    return key[:DISPLAY_PREFIX_LENGTH]
