"""Named, read-only analytics queries: validated parameters in, columns and rows out.

Callers pick a query name and give parameters; they never send SQL. Each query has a Pydantic
model for its parameters (unknown ones are an error), the tenant always comes from the request,
and every value reaches ClickHouse as a server-side parameter (`{name:Type}`), never spliced
into the text. The only text that varies is chosen from fixed tables here (the GROUP BY key).

Reads use `FINAL`: the tables are ReplacingMergeTree keyed by event id, and FINAL merges copies
of a redelivered message at read time, so counts are exact before the background merge runs.
Copies share the event's time and so its partition, which lets FINAL work per partition.

Percentiles are exact with linear interpolation (`quantileExactInclusive`, the same as numpy's
default and Python's `statistics.quantiles(method="inclusive")`).
"""

from __future__ import annotations

import json
import math
import re
import statistics
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, ClassVar, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from agentbus.contracts import AnalyticsQuery, AnalyticsResult
from agentbus.contracts.analytics import AnalyticsQueryName, Scalar

from .store import ClickHouseStore

_DT = "DateTime64(3, 'UTC')"
# "24h", "30d", "2w", and the spelled-out forms a model tends to write ("30 days", "1 month").
_PERIOD = re.compile(r"^(\d{1,5})\s*(h|hours?|d|days?|w|weeks?|months?)$")
_UNIT_HOURS = {"h": 1, "d": 24, "w": 24 * 7, "m": 24 * 30}
MAX_HOURS = 5 * 366 * 24.0
FINAL_PER_PARTITION = "do_not_merge_across_partitions_select_final = 1"


class BadParams(ValueError):
    """Parameters that do not fit the named query; the message is for the caller."""


class Params(BaseModel):
    # Lax on purpose: the gateway hands over query-string text ("24", "true").
    model_config = ConfigDict(extra="forbid", frozen=True)


class Window(Params):
    """A period: `since`/`until` (ISO-8601), or `since_hours`, or `period` such as 30d, 24h, 2w."""

    since: datetime | None = None
    until: datetime | None = None
    since_hours: float | None = Field(default=None, gt=0, le=MAX_HOURS)
    period: str | None = Field(default=None, max_length=32, description="e.g. 24h, 30d, 2w")

    # Not a parameter: the length of the period when the caller gives no start.
    default_hours: ClassVar[float] = 30 * 24.0

    @model_validator(mode="after")
    def _one_start(self) -> Window:
        given = [n for n in ("since", "since_hours", "period") if getattr(self, n) is not None]
        if len(given) > 1:
            raise ValueError(f"give only one of since, since_hours, period (got {given})")
        if self.period is not None and not _PERIOD.match(self.period.strip().lower()):
            raise ValueError("period must look like 24h, 30d, 2w or 3 months")
        start, end = self.bounds(datetime.now(UTC))
        if end <= start:
            raise ValueError("until must be after the start of the period")
        return self

    def bounds(self, now: datetime) -> tuple[datetime, datetime]:
        end = _aware(self.until) if self.until is not None else now
        if self.since is not None:
            return _aware(self.since), end
        hours = self.since_hours
        if self.period is not None:
            match = _PERIOD.match(self.period.strip().lower())
            assert match is not None
            hours = int(match.group(1)) * _UNIT_HOURS[match.group(2)[0]]
            if hours <= 0 or hours > MAX_HOURS:
                raise ValueError(f"period must be between 1h and {MAX_HOURS / 24:g}d")
        return end - timedelta(hours=hours or self.default_hours), end


def _aware(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class UsageParams(Window):
    group_by: Literal["model", "assistant", "tenant", "day", "run"] = "model"
    limit: int = Field(default=1000, ge=1, le=10_000, description="Most groups returned")
    run_id: str | None = Field(default=None, min_length=1, max_length=128)
    model: str | None = Field(default=None, min_length=1, max_length=256)
    assistant_id: str | None = Field(default=None, min_length=1, max_length=128)


class RunsParams(Window):
    group_by: Literal["assistant", "day", "status"] = "assistant"
    limit: int = Field(default=1000, ge=1, le=10_000, description="Most groups returned")
    assistant_id: str | None = Field(default=None, min_length=1, max_length=128)


class DoraParams(Window):
    service: str | None = Field(default=None, min_length=1, max_length=256)


SeriesName = Literal[
    "all",
    "usage.tokens",
    "usage.input_tokens",
    "usage.output_tokens",
    "usage.cost",
    "usage.calls",
    "usage.errors",
    "runs.count",
    "runs.errors",
    "runs.duration_p95",
    "dora.deployments",
    "dora.failed_deployments",
    "dora.commits",
    "dora.incidents",
    "events.count",
]
# Every series by name, from the one list above.
SERIES = tuple(name for name in get_args(SeriesName) if name != "all")


class AnomaliesParams(Window):
    series: SeriesName = "all"
    baseline_days: int = Field(default=14, ge=3, le=90)
    threshold: float = Field(default=3.5, gt=0, le=100)
    # Days of the baseline with data a series needs before one of its days can be unusual: a
    # tenant's first days of usage, or a new service's first deployments, are not "unusually
    # high against 0" (half the default baseline).
    min_history_days: int = Field(default=7, ge=0, le=90)


class RecordedRunsParams(Params):
    since_hours: float = Field(default=24.0, gt=0, le=MAX_HOURS)
    limit: int = Field(default=100, ge=1, le=1000)


class EvaluationsParams(Params):
    since_hours: float = Field(default=24.0, gt=0, le=MAX_HOURS)
    evaluation_id: str | None = Field(default=None, min_length=1, max_length=128)


class RunEvaluationsParams(EvaluationsParams):
    run_id: str | None = Field(default=None, min_length=1, max_length=128)
    limit: int = Field(default=1000, ge=1, le=10_000, description="Most (run, metric) rows")


def _value(v: Any) -> Scalar:
    """A ClickHouse value as a JSON scalar: times as ISO-8601 UTC, lists as JSON text."""
    if v is None or isinstance(v, (bool, str, int)):
        return v
    if isinstance(v, float):
        return None if math.isnan(v) or math.isinf(v) else v
    if isinstance(v, Decimal):
        return float(v)
    if isinstance(v, datetime):
        return _aware(v).isoformat().replace("+00:00", "Z")
    if isinstance(v, date):
        return v.isoformat()
    if isinstance(v, (list, tuple)):
        return json.dumps(list(v), default=str)
    return str(v)


def _round(v: float | None, digits: int = 6) -> float | None:
    return None if v is None or math.isnan(v) else round(v, digits)


Table = tuple[list[str], list[list[Scalar]]]


class Queries:
    def __init__(self, store: ClickHouseStore) -> None:
        self.store = store
        self._named: dict[
            AnalyticsQueryName, tuple[type[Params], Callable[[str, Any], Awaitable[Table]]]
        ] = {
            "usage": (UsageParams, self.usage),
            "runs": (RunsParams, self.runs),
            "dora": (DoraParams, self.dora),
            "anomalies": (AnomaliesParams, self.anomalies),
            "recorded_runs": (RecordedRunsParams, self.recorded_runs),
            "evaluations": (EvaluationsParams, self.evaluations),
            "run_evaluations": (RunEvaluationsParams, self.run_evaluations),
        }

    def params(self, name: AnalyticsQueryName, raw: dict[str, Scalar]) -> Params:
        model, _ = self._named[name]
        try:
            return model.model_validate(raw)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'params'}: {e['msg']}"
                for e in exc.errors()
            )
            raise BadParams(f"invalid params for {name}: {problems}") from None

    async def run(self, query: AnalyticsQuery) -> Table:
        params = self.params(query.name, query.params)
        _, handler = self._named[query.name]
        return await handler(query.tenant_id, params)

    async def _rows(self, sql: str, parameters: dict[str, Any]) -> list[tuple[Any, ...]]:
        # Copies of an event share its `ts`, so its month partition: FINAL may then collapse
        # each partition on its own (in parallel) instead of merging across all of them.
        return await self.store.query(f"{sql}\nSETTINGS {FINAL_PER_PARTITION}", parameters)

    # --- usage ---------------------------------------------------------------------------------

    async def usage(self, tenant: str, p: UsageParams) -> Table:
        keys = {
            "model": "model",
            "assistant": "assistant_id",
            "tenant": "tenant_id",
            "day": "toString(toDate(ts))",
            "run": "run_id",
        }
        since, until = p.bounds(datetime.now(UTC))
        where = [f"tenant_id = {{t:String}} AND ts >= {{since:{_DT}}} AND ts < {{until:{_DT}}}"]
        args: dict[str, Any] = {"t": tenant, "since": since, "until": until, "limit": p.limit}
        for column, value in (
            ("run_id", p.run_id),
            ("model", p.model),
            ("assistant_id", p.assistant_id),
        ):
            if value is not None:
                where.append(f"{column} = {{{column}:String}}")
                args[column] = value
        sql = f"""
            SELECT {keys[p.group_by]} AS key,
                   count() AS calls,
                   sum(input_tokens), sum(output_tokens), sum(input_tokens + output_tokens),
                   sum(cost_usd),
                   quantilesExactInclusive(0.5, 0.95, 0.99)(latency_ms),
                   quantilesExactInclusive(0.5, 0.95, 0.99)(ttft_ms),
                   countIf(NOT ok)
            FROM llm_usage FINAL
            WHERE {" AND ".join(where)}
            GROUP BY key ORDER BY key
            LIMIT {{limit:UInt32}}
        """
        columns = [
            p.group_by,
            "calls",
            "input_tokens",
            "output_tokens",
            "total_tokens",
            "cost_usd",
            "latency_ms_p50",
            "latency_ms_p95",
            "latency_ms_p99",
            "ttft_ms_p50",
            "ttft_ms_p95",
            "ttft_ms_p99",
            "errors",
        ]
        rows: list[list[Scalar]] = []
        for key, calls, tin, tout, total, cost, lat, ttft_q, errors in await self._rows(sql, args):
            ttft = ttft_q or [None, None, None]
            rows.append(
                [
                    _value(key),
                    int(calls),
                    int(tin),
                    int(tout),
                    int(total),
                    _round(float(cost), 9),
                    *(_round(x, 3) for x in lat),
                    *(_round(x, 3) if x is not None else None for x in ttft),
                    int(errors),
                ]
            )
        return columns, rows

    # --- runs ----------------------------------------------------------------------------------

    async def runs(self, tenant: str, p: RunsParams) -> Table:
        keys = {"assistant": "assistant_id", "day": "toString(toDate(ts))", "status": "status"}
        since, until = p.bounds(datetime.now(UTC))
        where = f"tenant_id = {{t:String}} AND ts >= {{since:{_DT}}} AND ts < {{until:{_DT}}}"
        args: dict[str, Any] = {"t": tenant, "since": since, "until": until, "limit": p.limit}
        if p.assistant_id is not None:
            where += " AND assistant_id = {assistant_id:String}"
            args["assistant_id"] = p.assistant_id
        sql = f"""
            SELECT {keys[p.group_by]} AS key, count(),
                   countIf(status = 'success'), countIf(status = 'error'),
                   countIf(status = 'cancelled'), countIf(status = 'interrupted'),
                   countIf(status = 'timeout'),
                   quantilesExactInclusive(0.5, 0.95, 0.99)(duration_ms), avg(duration_ms)
            FROM runs FINAL WHERE {where}
            GROUP BY key ORDER BY key
            LIMIT {{limit:UInt32}}
        """
        columns = [
            p.group_by,
            "runs",
            "success",
            "error",
            "cancelled",
            "interrupted",
            "timeout",
            "error_rate",
            "duration_ms_p50",
            "duration_ms_p95",
            "duration_ms_p99",
            "duration_ms_mean",
        ]
        rows: list[list[Scalar]] = []
        for key, n, ok, err, canc, intr, tmo, dur, mean in await self._rows(sql, args):
            rows.append(
                [
                    _value(key),
                    int(n),
                    int(ok),
                    int(err),
                    int(canc),
                    int(intr),
                    int(tmo),
                    _round((err + tmo) / n if n else None),
                    *(_round(x, 3) for x in dur),
                    _round(mean, 3),
                ]
            )
        return columns, rows

    # --- dora ----------------------------------------------------------------------------------

    async def dora(self, tenant: str, p: DoraParams) -> Table:
        """The four keys per service (and `*` for all), over deployments/incidents in the period.

        - deployment frequency: deployments in the period / days in the period;
        - lead time for changes: per commit sha deployed by a deployment in the period, the time
          from the commit (its `committed_at`, else its event time) to the first deployment of
          that service that contains it; mean and median, hours;
        - change failure rate: deployments that failed, or that an incident names as its cause
          (`deployment_id`), divided by deployments;
        - time to restore: incidents opened in the period and resolved, open -> resolve; mean
          and median, hours (open incidents are counted, not timed).

        Reads the DORA tables that views fill from `events` (migrations.py, migration 2): one
        row per commit sha with its commit time and each service's first deployment (no join at
        read time), one per deployment event, one per incident. Their min/max columns make a
        redelivered copy harmless; deployments are counted with FINAL over their event id.
        """
        since, until = p.bounds(datetime.now(UTC))
        days = (until - since).total_seconds() / 86400
        args: dict[str, Any] = {"t": tenant, "since": since, "until": until}
        service_filter = ""
        if p.service is not None:
            service_filter = " AND service = {service:String}"
            args["service"] = p.service
        deployments_sql = f"""
            SELECT if(grouping(service) = 1, '*', service) AS svc, count(),
                   countIf(failed OR deployment_id IN (
                       SELECT deployment_id FROM events
                       WHERE tenant_id = {{t:String}} AND kind = 'incident'
                         AND deployment_id != ''))
            FROM dora_deployments FINAL
            WHERE tenant_id = {{t:String}} AND ts >= {{since:{_DT}}} AND ts < {{until:{_DT}}}
              {service_filter}
            GROUP BY ROLLUP(service)
        """
        lead_sql = f"""
            SELECT if(grouping(service) = 1, '*', service) AS svc,
                   avg(hours), quantileExactInclusive(0.5)(hours), count()
            FROM (
                SELECT service,
                       dateDiff('millisecond', committed_at, deployed_at) / 3600000.0 AS hours
                FROM dora_lead FINAL
                ARRAY JOIN mapKeys(deployed) AS service, mapValues(deployed) AS deployed_at
                WHERE tenant_id = {{t:String}}
                  AND deployed_at >= {{since:{_DT}}} AND deployed_at < {{until:{_DT}}}
                  AND deployed_at >= committed_at{service_filter}
            )
            GROUP BY ROLLUP(service)
        """
        restore_sql = f"""
            SELECT if(grouping(service) = 1, '*', service) AS svc, count(),
                   countIf(restored), avgIf(hours, restored),
                   quantileExactInclusiveIf(0.5)(hours, restored)
            FROM (
                SELECT first_open.2 AS service, first_open.1 AS opened_at,
                       resolves = 1 AND resolved_at >= opened_at AS restored,
                       dateDiff('millisecond', opened_at, resolved_at) / 3600000.0 AS hours
                FROM dora_incidents FINAL
                WHERE tenant_id = {{t:String}} AND opens = 1
            )
            WHERE opened_at >= {{since:{_DT}}} AND opened_at < {{until:{_DT}}}{service_filter}
            GROUP BY ROLLUP(service)
        """
        deployments = {r[0]: r[1:] for r in await self._rows(deployments_sql, args)}
        leads = {r[0]: r[1:] for r in await self._rows(lead_sql, args)}
        restores = {r[0]: r[1:] for r in await self._rows(restore_sql, args)}
        columns = [
            "service",
            "period_days",
            "deployments",
            "deployments_per_day",
            "lead_time_hours_mean",
            "lead_time_hours_p50",
            "changes",
            "change_failure_rate",
            "failed_deployments",
            "incidents",
            "restored",
            "time_to_restore_hours_mean",
            "time_to_restore_hours_p50",
        ]
        services = sorted(
            set(deployments) | set(leads) | set(restores), key=lambda s: (s == "*", s)
        )
        rows: list[list[Scalar]] = []
        for svc in services:
            n_dep, n_failed = deployments.get(svc, (0, 0))
            lead_mean, lead_p50, n_changes = leads.get(svc, (None, None, 0))
            n_inc, n_restored, ttr_mean, ttr_p50 = restores.get(svc, (0, 0, None, None))
            rows.append(
                [
                    svc,
                    _round(days),
                    int(n_dep),
                    _round(n_dep / days),
                    _round(lead_mean),
                    _round(lead_p50),
                    int(n_changes),
                    _round(n_failed / n_dep) if n_dep else None,
                    int(n_failed),
                    int(n_inc),
                    int(n_restored),
                    _round(ttr_mean) if n_restored else None,
                    _round(ttr_p50) if n_restored else None,
                ]
            )
        return columns, rows

    # --- anomalies -----------------------------------------------------------------------------

    _SERIES_SQL: dict[str, tuple[str, str]] = {
        "usage.tokens": ("llm_usage", "sum(input_tokens + output_tokens)"),
        "usage.input_tokens": ("llm_usage", "sum(input_tokens)"),
        "usage.output_tokens": ("llm_usage", "sum(output_tokens)"),
        "usage.cost": ("llm_usage", "sum(cost_usd)"),
        "usage.calls": ("llm_usage", "count()"),
        "usage.errors": ("llm_usage", "countIf(NOT ok)"),
        "runs.count": ("runs", "count()"),
        "runs.errors": ("runs", "countIf(status IN ('error', 'timeout'))"),
        "runs.duration_p95": ("runs", "quantileExactInclusive(0.95)(duration_ms)"),
        "dora.deployments": ("events", "countIf(kind = 'deployment')"),
        "dora.failed_deployments": (
            "events",
            "countIf(kind = 'deployment' AND status = 'failed')",
        ),
        "dora.commits": ("events", "countIf(kind = 'commit')"),
        "dora.incidents": ("events", "countIf(kind = 'incident' AND status = 'open')"),
        "events.count": ("events", "count()"),
    }

    async def daily(self, tenant: str, series: str, first: date, last: date) -> dict[date, float]:
        table, expr = self._SERIES_SQL[series]
        sql = f"""
            SELECT toDate(ts) AS day, {expr} FROM {table} FINAL
            WHERE tenant_id = {{t:String}} AND ts >= {{since:{_DT}}} AND ts < {{until:{_DT}}}
            GROUP BY day
        """
        start = datetime(first.year, first.month, first.day, tzinfo=UTC)
        end = datetime(last.year, last.month, last.day, tzinfo=UTC) + timedelta(days=1)
        rows = await self._rows(sql, {"t": tenant, "since": start, "until": end})
        return {day: float(v) for day, v in rows if v is not None and not math.isnan(v)}

    async def anomalies(self, tenant: str, p: AnomaliesParams) -> Table:
        """Days whose value is far from the trailing baseline (robust z-score).

        For each day D in the period and each series, the baseline is the `baseline_days` days
        before D (days without data count as 0). With m the baseline's median and MAD the median
        absolute deviation from m, z = 0.6745 * (x - m) / MAD (Iglewicz and Hoaglin's modified
        z-score; 0.6745 makes MAD comparable with a standard deviation). When MAD is 0 (more than
        half the baseline days equal), the mean absolute deviation * 1.2533 stands in; when that
        is 0 too (a constant baseline), any different value is reported with z = null. A day is
        reported when |z| >= threshold (default 3.5) and the series has data on at least
        `min_history_days` of its baseline days (default 7).
        """
        since, until = p.bounds(datetime.now(UTC))
        first_day, last_day = since.date(), (until - timedelta(microseconds=1)).date()
        if (last_day - first_day).days > 366:
            raise BadParams("invalid params for anomalies: period: at most 366 days at a time")
        names = SERIES if p.series == "all" else (p.series,)
        columns = [
            "series",
            "day",
            "value",
            "baseline_median",
            "baseline_mad",
            "z_score",
            "direction",
        ]
        rows: list[list[Scalar]] = []
        for name in names:
            values = await self.daily(
                tenant, name, first_day - timedelta(days=p.baseline_days), last_day
            )
            day = first_day
            while day <= last_day:
                baseline = [
                    values.get(day - timedelta(days=k), 0.0) for k in range(1, p.baseline_days + 1)
                ]
                x = values.get(day, 0.0)
                history = sum(
                    1 for k in range(1, p.baseline_days + 1) if day - timedelta(days=k) in values
                )
                flagged, z, median, mad = robust_z(x, baseline, p.threshold)
                if flagged and history >= p.min_history_days:
                    rows.append(
                        [
                            name,
                            day.isoformat(),
                            _round(x),
                            _round(median),
                            _round(mad),
                            _round(z, 3) if z is not None else None,
                            "high" if x > median else "low",
                        ]
                    )
                day += timedelta(days=1)
        return columns, rows

    # --- recorded runs and evaluations ---------------------------------------------------------

    async def recorded_runs(self, tenant: str, p: RecordedRunsParams) -> Table:
        since = datetime.now(UTC) - timedelta(hours=p.since_hours)
        sql = f"""
            SELECT run_id, trace_id, thread_id, assistant_id, status, ts,
                   question, answer, contexts
            FROM runs FINAL
            WHERE tenant_id = {{t:String}} AND ts >= {{since:{_DT}}}
            ORDER BY ts DESC, run_id
            LIMIT {{limit:UInt32}}
        """
        columns = [
            "run_id",
            "trace_id",
            "thread_id",
            "assistant_id",
            "status",
            "ts",
            "question",
            "answer",
            "contexts",
        ]
        rows = await self._rows(sql, {"t": tenant, "since": since, "limit": p.limit})
        return columns, [[_value(v) for v in row] for row in rows]

    async def evaluations(self, tenant: str, p: EvaluationsParams) -> Table:
        since = datetime.now(UTC) - timedelta(hours=p.since_hours)
        where = f"tenant_id = {{t:String}} AND ts >= {{since:{_DT}}}"
        args: dict[str, Any] = {"t": tenant, "since": since}
        if p.evaluation_id is not None:
            where += " AND evaluation_id = {evaluation_id:String}"
            args["evaluation_id"] = p.evaluation_id
        sql = f"""
            SELECT metric, judge, uniqExact(run_id), avg(score), min(score)
            FROM evaluations FINAL WHERE {where}
            GROUP BY metric, judge ORDER BY metric, judge
        """
        columns = ["metric", "judge", "runs", "mean_score", "min_score"]
        rows = await self._rows(sql, args)
        return columns, [
            [str(m), str(j), int(n), _round(mean), _round(low)] for m, j, n, mean, low in rows
        ]

    async def run_evaluations(self, tenant: str, p: RunEvaluationsParams) -> Table:
        """Each run's score per metric: the latest one (a run scored again shows its new score).

        "Latest" is by the score's time, then its event id, so two scores of the same instant
        still give one answer; `evaluations` counts every score of the run and metric.
        """
        since = datetime.now(UTC) - timedelta(hours=p.since_hours)
        where = f"tenant_id = {{t:String}} AND ts >= {{since:{_DT}}}"
        args: dict[str, Any] = {"t": tenant, "since": since, "limit": p.limit}
        for name in ("evaluation_id", "run_id"):
            if getattr(p, name) is not None:
                where += f" AND {name} = {{{name}:String}}"
                args[name] = getattr(p, name)
        sql = f"""
            SELECT run_id, metric, argMax(score, (ts, id)), argMax(judge, (ts, id)),
                   count(), max(ts)
            FROM evaluations FINAL WHERE {where}
            GROUP BY run_id, metric
            ORDER BY max(ts) DESC, run_id, metric
            LIMIT {{limit:UInt32}}
        """
        columns = ["run_id", "metric", "score", "judge", "evaluations", "scored_at"]
        rows = await self._rows(sql, args)
        return columns, [
            [str(r), str(m), _round(score), str(j), int(n), _value(ts)]
            for r, m, score, j, n, ts in rows
        ]


def robust_z(
    x: float, baseline: Sequence[float], threshold: float
) -> tuple[bool, float | None, float, float]:
    """(anomalous, z or None for a constant baseline, baseline median, MAD). See `anomalies`."""
    median = statistics.median(baseline)
    mad = statistics.median(abs(v - median) for v in baseline)
    if mad > 0:
        z = 0.6745 * (x - median) / mad
        return abs(z) >= threshold, z, median, mad
    mean_ad = statistics.fmean(abs(v - median) for v in baseline)
    if mean_ad > 0:
        z = (x - median) / (1.2533 * mean_ad)
        return abs(z) >= threshold, z, median, mad
    return x != median, None, median, mad


async def answer(queries: Queries, query: AnalyticsQuery) -> AnalyticsResult:
    """Run a query; bad parameters become `error` on the result (a 4xx for the caller)."""
    import time

    started = time.perf_counter()
    columns, rows = await queries.run(query)
    return AnalyticsResult(
        tenant_id=query.tenant_id,
        name=query.name,
        columns=columns,
        rows=rows,
        took_ms=round((time.perf_counter() - started) * 1e3, 3),
    )
