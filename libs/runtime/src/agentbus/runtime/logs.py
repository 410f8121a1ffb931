"""Structured logging: one JSON object per line, carrying trace, span, run and tenant ids."""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

from opentelemetry import trace

_run_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("run_id", default=None)
_tenant_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("tenant_id", default=None)


@contextlib.contextmanager
def log_context(*, run_id: str | None = None, tenant_id: str | None = None) -> Iterator[None]:
    """Tag every log line written inside the block (this task only) with run and tenant."""
    tokens = []
    if run_id is not None:
        tokens.append((_run_id, _run_id.set(run_id)))
    if tenant_id is not None:
        tokens.append((_tenant_id, _tenant_id.set(tenant_id)))
    try:
        yield
    finally:
        for var, tok in reversed(tokens):
            var.reset(tok)


def _ids() -> dict[str, str]:
    out: dict[str, str] = {}
    ctx = trace.get_current_span().get_span_context()
    if ctx.is_valid:
        out["trace_id"] = format(ctx.trace_id, "032x")
        out["span_id"] = format(ctx.span_id, "016x")
    if (run_id := _run_id.get()) is not None:
        out["run_id"] = run_id
    if (tenant_id := _tenant_id.get()) is not None:
        out["tenant_id"] = tenant_id
    return out


_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "color_message"}


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "msg": record.getMessage(),
            **_ids(),
        }
        # `extra={...}` fields, e.g. a reject's reason, become top-level keys.
        for key, value in vars(record).items():
            if key not in _STANDARD and key not in entry:
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__(f"%(asctime)s %(levelname)s {service} %(name)s: %(message)s")


class IdleFetchTimeouts(logging.Filter):
    """Demote one known false alarm to DEBUG.

    nats-py's pull `fetch` raises the builtin TimeoutError when an idle fetch's deadline runs out,
    while FastStream 0.7.8's pull loop only suppresses `nats.errors.TimeoutError`: its supervisor
    then logs an ERROR with a traceback and restarts the loop, losing nothing. Idle consumers
    would otherwise log that about once a minute.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if (
            record.levelno >= logging.ERROR
            and "raised an exception, retrying" in record.getMessage()
            and type(exc) is TimeoutError
            and record.exc_info is not None
            and _raised_in_nats_fetch(record.exc_info[2])
        ):
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)
        return True


def _raised_in_nats_fetch(tb: TracebackType | None) -> bool:
    while tb is not None:
        code = tb.tb_frame.f_code
        if code.co_name == "_fetch_n" and "nats" in code.co_filename:
            return True
        tb = tb.tb_next
    return False


def setup_logging(service: str, level: str = "INFO", fmt: str = "json") -> None:
    """Route all logging (ours, FastStream's, uvicorn's) through one stderr handler."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(service) if fmt == "json" else TextFormatter(service))
    handler.addFilter(IdleFetchTimeouts())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "faststream", "faststream.access"):
        lg = logging.getLogger(name)
        lg.handlers[:] = []
        lg.propagate = True
    # Chatty libraries stay at warning unless we debug.
    for name in ("neo4j", "nats", "httpx", "asyncio"):
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
