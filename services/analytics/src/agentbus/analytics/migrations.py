"""Versioned ClickHouse schema, applied at start-up.

Each migration is a numbered list of statements (`agentbus.runtime.migrations`, the same rules as
the PostgreSQL stores). Applied versions are recorded in `schema_migrations`; start-up applies the
missing ones in order. Every statement is idempotent
(`IF NOT EXISTS`), so a migration interrupted half-way, or run twice by two replicas starting
together against a server, converges to the same schema; the version row is written last.

Every fact table is a `ReplacingMergeTree` whose sorting key ends in the event id: JetStream
redelivers a message whose ack was lost (the service died between insert and ack), and the copy
then collapses into the first at merge time. Queries read with `FINAL`, so they are exact even
before that merge has happened (see queries.py).
"""

from __future__ import annotations

import logging

from agentbus.runtime.migrations import Migration, pending

from .store import ClickHouseStore

log = logging.getLogger("agentbus.analytics.migrations")

_DT = "DateTime64(3, 'UTC')"


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "domain events, telemetry and ingest outcomes",
        (
            # Domain events. The DORA columns (kind, service, status, sha, commits, ...) are
            # derived from `data` on insert (rows.py) so the DORA query reads plain columns.
            f"""
            CREATE TABLE IF NOT EXISTS events (
                tenant_id LowCardinality(String),
                id String,
                ts {_DT},
                source LowCardinality(String),
                type LowCardinality(String),
                subject Nullable(String),
                kind LowCardinality(String),
                service String,
                status LowCardinality(String),
                sha String,
                commits Array(String),
                incident_id String,
                deployment_id String,
                committed_at Nullable({_DT}),
                data String,
                stored_at {_DT}
            ) ENGINE = ReplacingMergeTree
            PARTITION BY toYYYYMM(ts)
            ORDER BY (tenant_id, kind, id)
            """,
            f"""
            CREATE TABLE IF NOT EXISTS llm_usage (
                tenant_id LowCardinality(String),
                id String,
                ts {_DT},
                run_id String,
                thread_id String,
                assistant_id LowCardinality(String),
                operation LowCardinality(String),
                model LowCardinality(String),
                provider LowCardinality(String),
                input_tokens UInt64,
                output_tokens UInt64,
                cached_tokens UInt64,
                cost_usd Float64,
                latency_ms Float64,
                ttft_ms Nullable(Float64),
                streamed Bool,
                ok Bool,
                trace_id String
            ) ENGINE = ReplacingMergeTree
            PARTITION BY toYYYYMM(ts)
            ORDER BY (tenant_id, id)
            """,
            f"""
            CREATE TABLE IF NOT EXISTS runs (
                tenant_id LowCardinality(String),
                id String,
                ts {_DT},
                run_id String,
                thread_id String,
                assistant_id LowCardinality(String),
                status LowCardinality(String),
                duration_ms Float64,
                node_count UInt32,
                tool_count UInt32,
                trace_id String,
                question String,
                answer String,
                contexts Array(String)
            ) ENGINE = ReplacingMergeTree
            PARTITION BY toYYYYMM(ts)
            ORDER BY (tenant_id, id)
            """,
            f"""
            CREATE TABLE IF NOT EXISTS tool_calls (
                tenant_id LowCardinality(String),
                id String,
                ts {_DT},
                run_id String,
                tool LowCardinality(String),
                duration_ms Float64,
                ok Bool,
                error String,
                trace_id String
            ) ENGINE = ReplacingMergeTree
            PARTITION BY toYYYYMM(ts)
            ORDER BY (tenant_id, id)
            """,
            f"""
            CREATE TABLE IF NOT EXISTS evaluations (
                tenant_id LowCardinality(String),
                id String,
                ts {_DT},
                evaluation_id String,
                run_id String,
                trace_id String,
                metric LowCardinality(String),
                score Float64,
                judge LowCardinality(String),
                judge_model String,
                reason String
            ) ENGINE = ReplacingMergeTree
            PARTITION BY toYYYYMM(ts)
            ORDER BY (tenant_id, id)
            """,
            f"""
            CREATE TABLE IF NOT EXISTS ingest_events (
                tenant_id LowCardinality(String),
                id String,
                ts {_DT},
                kind LowCardinality(String),
                document_id String,
                sha256 String,
                stage LowCardinality(String),
                done UInt64,
                total UInt64,
                chunks UInt64,
                pages UInt64,
                entities UInt64,
                unchanged Bool,
                duration_ms Float64,
                reason String,
                retryable Bool
            ) ENGINE = ReplacingMergeTree
            PARTITION BY toYYYYMM(ts)
            ORDER BY (tenant_id, id)
            """,
        ),
    ),
)

_LEDGER = f"""
CREATE TABLE IF NOT EXISTS schema_migrations (
    version UInt32,
    name String,
    applied_at {_DT} DEFAULT now64(3)
) ENGINE = ReplacingMergeTree ORDER BY version
"""


def applied_versions(store: ClickHouseStore) -> set[int]:
    return {int(row[0]) for row in store.query_sync("SELECT version FROM schema_migrations FINAL")}


def migrate(store: ClickHouseStore, migrations: tuple[Migration, ...] = MIGRATIONS) -> list[int]:
    """Apply the migrations not yet recorded, in order; returns the versions applied now."""
    store.command(_LEDGER)
    applied = []
    for migration in pending(migrations, applied_versions(store), "ClickHouse"):
        for statement in migration.statements:
            store.command(statement)
        store.insert(
            "schema_migrations", [(migration.version, migration.name)], ["version", "name"]
        )
        log.info(
            "applied migration", extra={"version": migration.version, "migration": migration.name}
        )
        applied.append(migration.version)
    return applied
