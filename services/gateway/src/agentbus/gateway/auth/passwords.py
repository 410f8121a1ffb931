"""Passwords: the policy a new password must meet, and Argon2id hashing off the event loop."""

from __future__ import annotations

import asyncio
import secrets
from typing import Annotated

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from pydantic import AfterValidator, Field
from pydantic_core import PydanticCustomError

MIN_LENGTH = 8
# Long enough for any passphrase, short enough that hashing stays cheap to refuse.
MAX_LENGTH = 128


def password_problems(password: str) -> list[str]:
    """What `password` lacks, in words; empty when it meets the policy."""
    problems: list[str] = []
    if len(password) < MIN_LENGTH:
        problems.append(f"at least {MIN_LENGTH} characters")
    if not any(c.isupper() for c in password):
        problems.append("an uppercase letter")
    if not any(c.islower() for c in password):
        problems.append("a lowercase letter")
    if not any(c.isdigit() for c in password):
        problems.append("a digit")
    if not any(not c.isalnum() and not c.isspace() for c in password):
        problems.append("a special character")
    return problems


def check_password(password: str) -> str:
    """Pydantic validator: the password, or one error naming every missing rule."""
    problems = password_problems(password)
    if problems:
        raise PydanticCustomError(
            "password_policy",
            "Password must contain {rules}",
            {"rules": ", ".join(problems)},
        )
    return password


# A new password (registration): the policy applies.
NewPassword = Annotated[str, Field(max_length=MAX_LENGTH), AfterValidator(check_password)]
# A password being presented (login): only bounded, never judged.
GivenPassword = Annotated[str, Field(min_length=1, max_length=MAX_LENGTH)]


class Passwords:
    """Argon2id hashes (argon2-cffi's RFC 9106 defaults), computed in a worker thread.

    A hash takes a few hundred milliseconds of CPU by design; running it on the event loop
    would stall every other request of the gateway meanwhile.
    """

    def __init__(self, hasher: PasswordHasher | None = None) -> None:
        self.hasher = hasher or PasswordHasher()
        self._dummy: str | None = None

    async def hash(self, password: str) -> str:
        return await asyncio.to_thread(self.hasher.hash, password)

    async def verify(self, hashed: str, password: str) -> bool:
        def check() -> bool:
            try:
                return self.hasher.verify(hashed, password)
            except (VerifyMismatchError, VerificationError, InvalidHashError):
                return False

        return await asyncio.to_thread(check)

    def needs_rehash(self, hashed: str) -> bool:
        """True when the stored hash used weaker parameters than the current ones."""
        try:
            return self.hasher.check_needs_rehash(hashed)
        except InvalidHashError:
            return True

    async def waste_time(self, password: str) -> None:
        """Verify against a throwaway hash: an unknown email costs as long as a bad password."""
        if self._dummy is None:
            self._dummy = await self.hash(secrets.token_urlsafe(16))
        await self.verify(self._dummy, password)
