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

Migration 2 adds the DORA tables, filled from `events` by materialised views on every insert and
back-filled from the events stored before; their columns are min/max aggregates (or, for
deployments, one row per event id again), so copies of an event change nothing. deletes.py keeps
them in step with deleted events.
"""

from __future__ import annotations

import logging

from agentbus.runtime.migrations import Migration, pending

from .store import ClickHouseStore

log = logging.getLogger("agentbus.analytics.migrations")

_DT = "DateTime64(3, 'UTC')"
# The latest DateTime64(3) (a sha deployed but never committed, an incident never opened) and
# the earliest (never resolved): they lose every min and max against a real time.
NEVER = "toDateTime64('2299-12-31 23:59:59.999', 3, 'UTC')"
EPOCH = "toDateTime64(0, 3, 'UTC')"
# The DORA tables are read with FINAL, which costs little only on merged parts (a partition of
# one part is read as it is): once no part of a partition has changed for 10 s, it is merged into
# one, so a store between bursts of events answers from merged parts.
FORCE_MERGE = "min_age_to_force_merge_seconds = 10, min_age_to_force_merge_on_partition_only = 1"

# The rows of the DORA tables derived from `events` rows: the views' queries (applied to each
# inserted block), the back-fill's and a delete's re-derivation (deletes.py).
LEAD = f"""
    SELECT tenant_id, entry.1 AS sha, entry.2 AS committed_at, entry.3 AS deployed
    FROM (
        SELECT tenant_id,
               if(kind = 'commit',
                  [(sha, assumeNotNull(committed_at), CAST(map() AS Map(String, {_DT})))],
                  arrayMap(s -> (s, {NEVER}, map(service, ts)), commits)) AS entries
        FROM events
        WHERE kind IN ('commit', 'deployment')
    )
    ARRAY JOIN entries AS entry
    WHERE entry.1 != ''
"""
DEPLOYMENTS = """
    SELECT tenant_id, service, ts, id, status = 'failed' AS failed, deployment_id
    FROM events
    WHERE kind = 'deployment'
"""
INCIDENTS = f"""
    SELECT tenant_id, incident_id,
           max(status = 'open') AS opens,
           max(status = 'resolved') AS resolves,
           min(if(status = 'open', (ts, service), ({NEVER}, ''))) AS first_open,
           max(if(status = 'resolved', ts, {EPOCH})) AS resolved_at
    FROM events
    WHERE kind = 'incident'
    GROUP BY tenant_id, incident_id
"""


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
    Migration(
        2,
        "DORA tables fed from events on insert, back-filled",
        (
            # Per (tenant, commit sha): the commit time and, per service, the time of the first
            # deployment containing it, kept up to date by the view below. Both are min, so a
            # redelivered copy changes nothing; the lead-time join of deployments to commits
            # becomes one row per sha. A sha without a commit event keeps NEVER.
            f"""
            CREATE TABLE IF NOT EXISTS dora_lead (
                tenant_id LowCardinality(String),
                sha String,
                committed_at SimpleAggregateFunction(min, {_DT}),
                deployed SimpleAggregateFunction(minMap, Map(String, {_DT}))
            ) ENGINE = AggregatingMergeTree
            ORDER BY (tenant_id, sha)
            SETTINGS {FORCE_MERGE}
            """,
            f"""
            CREATE MATERIALIZED VIEW IF NOT EXISTS dora_lead_events TO dora_lead AS
            {LEAD}
            """,
            # One row per deployment event, keyed by its id (a copy collapses into it, FINAL
            # makes counts exact before that) and sorted by service and time for the period.
            # Not partitioned, nor is any DORA table: an insert adds one part to each.
            f"""
            CREATE TABLE IF NOT EXISTS dora_deployments (
                tenant_id LowCardinality(String),
                service LowCardinality(String),
                ts {_DT},
                id String,
                failed Bool,
                deployment_id String
            ) ENGINE = ReplacingMergeTree
            ORDER BY (tenant_id, service, ts, id)
            SETTINGS {FORCE_MERGE}
            """,
            f"""
            CREATE MATERIALIZED VIEW IF NOT EXISTS dora_deployments_events TO dora_deployments AS
            {DEPLOYMENTS}
            """,
            # Per (tenant, incident id): whether it was opened / resolved, its first open (time,
            # service) and last resolve. All min/max: copies change nothing.
            f"""
            CREATE TABLE IF NOT EXISTS dora_incidents (
                tenant_id LowCardinality(String),
                incident_id String,
                opens SimpleAggregateFunction(max, UInt8),
                resolves SimpleAggregateFunction(max, UInt8),
                first_open SimpleAggregateFunction(min, Tuple({_DT}, String)),
                resolved_at SimpleAggregateFunction(max, {_DT})
            ) ENGINE = AggregatingMergeTree
            ORDER BY (tenant_id, incident_id)
            SETTINGS {FORCE_MERGE}
            """,
            f"""
            CREATE MATERIALIZED VIEW IF NOT EXISTS dora_incidents_events TO dora_incidents AS
            {INCIDENTS}
            """,
            # Back-fill what was stored before. Run again (an interrupted start-up), it adds
            # copies that min/max and the deployment id key absorb.
            f"INSERT INTO dora_lead {LEAD}",
            f"INSERT INTO dora_deployments {DEPLOYMENTS}",
            f"INSERT INTO dora_incidents {INCIDENTS}",
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
