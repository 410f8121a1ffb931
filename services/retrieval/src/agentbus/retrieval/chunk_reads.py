"""One traced read of the chunks table: a client span per database round trip (OTel database
conventions), with a summary and the row count but no query text, which holds the caller's
words."""

from __future__ import annotations

from typing import Any

import asyncpg
from opentelemetry.trace import SpanKind

from agentbus.runtime.traces import tracer


async def select_chunks(
    pool: asyncpg.Pool, summary: str, sql: str, *args: Any
) -> list[asyncpg.Record]:
    with tracer().start_as_current_span(
        "SELECT chunks",
        kind=SpanKind.CLIENT,
        attributes={
            "db.system.name": "postgresql",
            "db.operation.name": "SELECT",
            "db.collection.name": "chunks",
            "db.query.summary": f"SELECT chunks ({summary})",
        },
    ) as span:
        rows: list[asyncpg.Record] = await pool.fetch(sql, *args)
        span.set_attribute("db.response.returned_rows", len(rows))
        return rows
