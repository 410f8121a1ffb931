"""Schemas change one way everywhere: numbered migrations, each applied once and recorded.

A store's owner lists its `Migration`s (1, 2, 3, ...); at start-up the ones not yet recorded in
the store's `schema_migrations` are applied in order and recorded. PostgreSQL's runner is
`agentbus.runtime.stores.schema.migrate` (one transaction per owner under its advisory lock, so
replicas starting together apply each once); ClickHouse's is `agentbus.analytics.migrations`
(no transactions there, so every statement is idempotent and the version row is written last).
Either refuses a store recorded at a version newer than the code: old code would misread it.

A change to a table is a new migration, never an edit of an applied one: a database that ran the
old text would not run the new one.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    statements: tuple[str, ...]


class MigrationError(RuntimeError):
    pass


def pending(
    migrations: Sequence[Migration], applied: Collection[int], store: str
) -> list[Migration]:
    """The migrations to apply, in order, given the versions already recorded in `store`."""
    versions = [m.version for m in migrations]
    if versions != sorted(set(versions)) or (versions and versions[0] < 1):
        raise MigrationError(f"{store}: versions must be unique, increasing, from 1: {versions}")
    newest = versions[-1] if versions else 0
    ahead = sorted(v for v in applied if v > newest)
    if ahead:
        raise MigrationError(f"{store} is at schema version {ahead[-1]}, newer than this code")
    return [m for m in migrations if m.version not in applied]
