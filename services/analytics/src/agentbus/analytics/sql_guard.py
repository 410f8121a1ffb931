"""The gate in front of SQL text from a model or a rule: read-only, tenant-scoped by
construction, allow-listed tables and functions, bounded rows and time.

The text is parsed (sqlglot, ClickHouse dialect), never pattern-matched: exactly one SELECT
(UNIONs and CTEs of SELECTs allowed); every table must be one of `TABLES` (no database, no table
function, no system table); every function one of `FUNCTIONS`; no SETTINGS, FORMAT, INTO,
placeholders or parameters. Then each table reference is replaced by
`(SELECT * FROM <table> FINAL WHERE tenant_id = {tenant:String})` under the same name, so the
query can only ever see its own tenant's rows, whatever its WHERE says; the whole is wrapped in
`SELECT * FROM (...) LIMIT max_rows + 1` and run with a time limit (`SETTINGS` added here).
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError

from agentbus.contracts.insights import AnalyticsSql, SqlResult

from .queries import _value
from .store import ClickHouseStore

# The analytics tables a question may read (see migrations.py): domain events, model usage,
# runs, tool calls, evaluation scores, ingest outcomes.
TABLES = frozenset({"events", "llm_usage", "runs", "tool_calls", "evaluations", "ingest_events"})

# sqlglot's classes for the functions it knows, by class name, and the ClickHouse names of
# those it passes through as Anonymous (lower-case). Aggregates, dates, strings, JSON reads.
_KNOWN = frozenset(
    """Count CountIf Sum SumIf Avg AvgIf Min Max ArgMax ArgMin Quantile Quantiles ApproxDistinct
    Round Floor Ceil Abs Sqrt Ln Log Exp Pow Div If Case Coalesce Nullif Greatest Least Cast
    TryCast Lower Upper Length Substring Concat Trim StrPosition Replace Like ILike
    TimestampTrunc DateTrunc DateDiff DateAdd DateSub TsOrDsToDate TimeToStr StrToTime ToStartOf
    CurrentDate CurrentTimestamp Date Day Month Year Week DayOfWeek Hour Extract JSONExtract
    JSONExtractScalar ParseJSON Array ArrayContains ArraySize ArrayJoin Explode Unnest Distinct
    Interval Anonymous Uniq StddevPop StddevSamp Stddev Variance Median CombinedAggFunc
    CombinedParameterizedAgg ParameterizedAgg LastValue FirstValue RowNumber Rank DenseRank Lag
    Lead Window Filter Tuple Struct Map Split SplitPart RegexpLike StartsWith EndsWith Trunc
    SafeDivide Sign Mod ToDays Quarter Minute Second ApproxQuantile AnyValue GroupConcat
    ArrayAgg Has IsNan IsInf Left Right Unhex And Or Not Xor In Between Is Neg Paren""".split()  # noqa: SIM905
)
_ANONYMOUS = frozenset(
    """count countif sumif avgif uniq uniqexact quantile quantileexact quantileexactinclusive
    median any anylast groupuniqarray grouparray topk argmax argmin min max sum avg todate
    todatetime todatetime64 tostartofday tostartofweek tostartofmonth tostartofhour
    tostartofyear tostartofquarter tostartofinterval toyyyymm toyyyymmdd todayofweek tohour
    tomonday now now64 today yesterday datediff date_diff dateadd datesub adddays subtractdays
    addhours subtracthours tounixtimestamp formatdatetime parsedatetimebesteffort
    jsonextractstring jsonextractint jsonextractfloat jsonextractbool jsonextractraw
    jsonextractarrayraw jsonhas jsonlength visitparamextractstring lower upper length substring
    concat trim replaceall position positioncaseinsensitive like ilike match extract startswith
    endswith splitbychar arrayjoin arraystringconcat has hasany length empty notempty tostring
    tofloat64 toint64 touint64 round floor ceil abs greatest least if multiif coalesce ifnull
    nullif isnull isnotnull""".split()  # noqa: SIM905
)

MAX_ROWS = 1000
MAX_SECONDS = 10


class Rejected(ValueError):
    """SQL the gate refuses; the message says what and is shown to the caller."""


@dataclass(frozen=True)
class Guarded:
    sql: str  # what runs, with `{tenant:String}` and the limits
    shown: str  # the same without the SETTINGS tail: what a user is shown
    tables: tuple[str, ...]


def _function_name(node: exp.Func) -> str:
    if isinstance(node, (exp.Anonymous, exp.ParameterizedAgg)):
        return str(node.name)
    return type(node).__name__


def _allowed_function(node: exp.Func) -> bool:
    # Anonymous calls and parameterised aggregates (`quantileExact(0.5)(x)`) carry any name.
    named = (exp.Anonymous, exp.ParameterizedAgg, exp.CombinedAggFunc, exp.CombinedParameterizedAgg)
    if isinstance(node, named):
        return str(node.name).lower() in _ANONYMOUS
    return type(node).__name__ in _KNOWN


_FORBIDDEN = (
    exp.Insert,
    exp.Update,
    exp.Delete,
    exp.Create,
    exp.Drop,
    exp.Alter,
    exp.Command,
    exp.Into,
    exp.Placeholder,
    exp.Parameter,
    exp.Set,
    exp.Use,
    exp.Transaction,
    exp.Merge,
    exp.TruncateTable,
)


def guard(sql: str, max_rows: int = 100, seconds: int = MAX_SECONDS) -> Guarded:
    """The tenant-scoped, bounded form of `sql`, or `Rejected` with the reason."""
    try:
        statements = [s for s in sqlglot.parse(sql, read="clickhouse") if s is not None]
    except ParseError as exc:
        raise Rejected(f"not valid SQL: {str(exc).splitlines()[0][:200]}") from None
    if len(statements) != 1:
        raise Rejected(f"exactly one statement is allowed, got {len(statements)}")
    tree = statements[0]
    if not isinstance(tree, (exp.Select, exp.Union)):
        raise Rejected(f"only SELECT is allowed, not {tree.key.upper()}")
    for node in tree.walk():
        if isinstance(node, _FORBIDDEN):
            raise Rejected(f"{node.key.upper()} is not allowed in a read-only query")
        if isinstance(node, (exp.Select, exp.Union)) and (
            node.args.get("settings") or node.args.get("format")
        ):
            raise Rejected("SETTINGS and FORMAT are set by analytics, not by the query")
        if isinstance(node, exp.Func) and not _allowed_function(node):
            raise Rejected(f"function {_function_name(node)} is not allowed")
    ctes = {c.alias_or_name.lower() for c in tree.find_all(exp.CTE)}
    tables: list[str] = []
    for table in list(tree.find_all(exp.Table)):
        if not isinstance(table.this, exp.Identifier):
            raise Rejected("table functions are not allowed")
        name = table.name.lower()
        if table.args.get("db") or table.args.get("catalog"):
            raise Rejected(f"table {table.sql('clickhouse')} is not allowed (no databases)")
        if name in ctes and name not in TABLES:
            continue
        if name not in TABLES:
            allowed = ", ".join(sorted(TABLES))
            raise Rejected(f"table {table.name} is not allowed; tables: {allowed}")
        tables.append(name)
        scoped = sqlglot.parse_one(
            f"SELECT * FROM {name} FINAL WHERE tenant_id = {{tenant:String}}", read="clickhouse"
        )
        alias = table.alias or name
        replacement = exp.Subquery(this=scoped, alias=exp.TableAlias(this=exp.to_identifier(alias)))
        # `FROM events FINAL` parses as Final(Table): replace the wrapper, not just the table.
        target = table.parent if isinstance(table.parent, exp.Final) else table
        target.replace(replacement)
    if not tables:
        raise Rejected("the query reads no analytics table")
    rows = max(1, min(int(max_rows), MAX_ROWS))
    # ClickHouse parameter syntax without the space sqlglot prints (`{tenant: String}`).
    inner = tree.sql(dialect="clickhouse").replace("{tenant: String}", "{tenant:String}")
    shown = f"SELECT * FROM ({inner}) LIMIT {rows + 1}"
    run = (
        f"{shown} SETTINGS max_execution_time = {int(seconds)}, readonly = 2, "
        f"max_result_rows = {rows + 1}, result_overflow_mode = 'break'"
    )
    return Guarded(sql=run, shown=shown, tables=tuple(dict.fromkeys(tables)))


# "Code: 47. DB::Exception: Unknown expression identifier `x`. In scope SELECT .... (CODE)": the
# sentence and the code, without the rewritten query ClickHouse quotes (scoping subqueries, our
# SETTINGS) or, from a server, "while processing query" and its stack trace.
_CLICKHOUSE = re.compile(
    r"Code: \d+\. DB::Exception: (?P<what>.*?)\s*\((?P<code>[A-Z][A-Z0-9_]+)\)"
)
_QUOTES_QUERY = re.compile(
    r"(\.?\s+In scope\b|:?\s+while processing query\b|\.\s+Stack trace\b).*", re.S
)
FAILED_SQL = "The query failed"


def sql_failure(exc: Exception) -> str:
    """What the asker (a model writing SQL) may read of a failed SELECT: ClickHouse's reason and
    code, so it can mend its query; anything else a fixed sentence (the log has the rest)."""
    found = _CLICKHOUSE.search(str(exc))
    if found is None:
        return FAILED_SQL
    what = _QUOTES_QUERY.sub("", found["what"]).strip().rstrip(".")[:300]
    return f"{FAILED_SQL}: {what} ({found['code']})" if what else f"{FAILED_SQL} ({found['code']})"


async def answer_sql(store: ClickHouseStore, req: AnalyticsSql) -> SqlResult:
    """Run `req.sql` through the gate for `req.tenant_id`: rows, or why not (`rejected`)."""
    started = time.perf_counter()
    try:
        guarded = guard(req.sql, req.max_rows)
    except Rejected as exc:
        return SqlResult(tenant_id=req.tenant_id, rejected=str(exc))
    columns, rows = await asyncio.to_thread(
        store.query_columns_sync, guarded.sql, {"tenant": req.tenant_id}
    )
    truncated = len(rows) > req.max_rows
    return SqlResult(
        tenant_id=req.tenant_id,
        sql=guarded.shown.replace(f"LIMIT {req.max_rows + 1}", f"LIMIT {req.max_rows}"),
        columns=columns,
        rows=[[_value(v) for v in row] for row in rows[: req.max_rows]],
        truncated=truncated,
        took_ms=(time.perf_counter() - started) * 1e3,
    )
