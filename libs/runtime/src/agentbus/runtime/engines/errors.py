"""The one exception the engine launchers raise."""

from __future__ import annotations


class EngineError(RuntimeError):
    """An engine cannot start (or cannot be stopped).

    The message is a single line that names the engine and the problem, e.g.
    ``postgres: port 5432 on 127.0.0.1 is already in use``. It is written to be shown to the
    user as is, so callers print ``str(exc)`` instead of a traceback.
    """

    def __init__(self, message: str) -> None:
        # Quoted log lines and OS errors may carry newlines; flatten them to keep one line.
        super().__init__(" ".join(message.split()))
