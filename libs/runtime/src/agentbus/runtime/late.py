"""Resources a service makes in its start-up hook and its handlers use afterwards.

Connection pools, workers and runners need the running event loop and the engines, so `build()`
cannot make them; its handlers are registered before they exist. A `Late` holds one such
resource with its type, and says clearly when a handler runs before the hook has set it.
"""

from __future__ import annotations

from typing import Generic, TypeVar

T = TypeVar("T")


class NotStarted(RuntimeError):
    """A late-bound resource was used before the start-up hook set it."""


class Late(Generic[T]):
    """One resource set once by a start-up hook."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._value: T | None = None

    def set(self, value: T) -> T:
        self._value = value
        return value

    @property
    def value(self) -> T:
        if self._value is None:
            raise NotStarted(f"{self.name} is not ready: the service has not finished starting")
        return self._value

    def get(self) -> T | None:
        """The resource, or None before start-up made it (for shutdown hooks)."""
        return self._value
