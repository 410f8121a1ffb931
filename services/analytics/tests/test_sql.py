"""`agentbus.v1.analytics.sql`: model- or rule-written SELECTs over chDB, through the gate.

One service start for all the cases: tenant isolation whatever the WHERE says, the row bound,
and each kind of refusal (writes, other tables, table functions, settings, several statements).
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from nats.aio.client import Client as NatsClient

from agentbus.analytics.app import build
from agentbus.analytics.settings import AnalyticsSettings
from agentbus.analytics.sql_guard import Rejected, guard, sql_failure
from agentbus.contracts import DomainEvent, ErrorReply, utcnow
from agentbus.contracts import subjects as s
from agentbus.contracts.insights import ANALYTICS_SQL, AnalyticsSql, SqlResult
from agentbus.runtime.testing import running

from .support import eventually


async def sql(nc: NatsClient, tenant: str, text: str, max_rows: int = 100) -> SqlResult:
    req = AnalyticsSql(tenant_id=tenant, sql=text, max_rows=max_rows)
    reply = await nc.request(ANALYTICS_SQL, req.model_dump_json().encode(), timeout=30)
    return SqlResult.model_validate_json(reply.data)


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("DROP TABLE events", "only SELECT"),
        ("INSERT INTO events SELECT * FROM events", "only SELECT"),
        ("SELECT 1; SELECT 2", "exactly one statement"),
        ("SELECT * FROM system.tables", "no databases"),
        ("SELECT * FROM secrets", "table secrets is not allowed"),
        ("SELECT * FROM file('/etc/passwd')", "not allowed"),
        ("SELECT * FROM url('http://127.0.0.1/x', CSV)", "not allowed"),
        ("SELECT * FROM events SETTINGS readonly = 0", "SETTINGS"),
        ("SELECT * FROM events WHERE tenant_id = {tenant:String}", "PLACEHOLDER"),
        ("SELECT 1", "reads no analytics table"),
        ("SELECT FROM WHERE", "not valid SQL"),
    ],
)
def test_the_gate_refuses(text: str, why: str) -> None:
    with pytest.raises(Rejected, match=why):
        guard(text)


def test_every_table_is_scoped_to_the_tenant_under_its_own_name() -> None:
    g = guard("SELECT e.service, count() FROM events AS e JOIN runs ON 1 = 1 GROUP BY e.service")
    assert g.tables == ("events", "runs")
    assert g.shown.count("WHERE tenant_id = {tenant:String}") == 2
    assert "AS e " in g.shown and "AS runs" in g.shown and g.shown.endswith("LIMIT 101")


async def test_sql_reads_only_the_tenants_rows_bounded(
    analytics_env: dict[str, str], nc: NatsClient, tenant: str
) -> None:
    other = tenant + "x"
    js = nc.jetstream()
    for owner, count in ((tenant, 5), (other, 3)):
        for i in range(count):
            event = DomainEvent(
                tenant_id=owner,
                source="ci",
                type="deployment",
                ts=utcnow() - timedelta(hours=i),
                data={"service": f"svc{i % 2}", "commits": [f"c{i}"], "status": "success"},
            )
            await js.publish(
                s.domain_event(owner, "ci", "deployment"), event.model_dump_json().encode()
            )
    async with running(build(AnalyticsSettings())):

        async def stored() -> bool:
            got = await sql(nc, other, "SELECT count() AS n FROM events")
            return got.error is None and got.rows == [[3]]

        await eventually(stored, what="the events in chDB")
        # Asking for the other tenant's rows in the WHERE finds nothing: the scope is the table.
        mine = await sql(
            nc, tenant, f"SELECT count() AS n FROM events WHERE tenant_id = '{other}' OR 1 = 1"
        )
        assert mine.rejected is None and mine.error is None, mine
        assert mine.rows == [[5]] and mine.columns == ["n"]
        assert "tenant_id = {tenant:String}" in mine.sql  # what ran is shown

        grouped = await sql(
            nc,
            tenant,
            "SELECT service, count() AS deployments FROM events WHERE kind = 'deployment' "
            "GROUP BY service ORDER BY service",
        )
        assert grouped.rows == [["svc0", 3], ["svc1", 2]], grouped

        bounded = await sql(nc, tenant, "SELECT id FROM events", max_rows=2)
        assert len(bounded.rows) == 2 and bounded.truncated

        refused = await sql(nc, tenant, "SELECT * FROM system.tables")
        assert refused.rejected and not refused.rows

        # A query ClickHouse refuses: its reason and code, for the model to mend the query,
        # without the rewritten query it quotes (the scoping subqueries, our SETTINGS).
        unknown = await sql(nc, tenant, "SELECT nosuch FROM events")
        assert unknown.error is not None and not unknown.rows
        assert unknown.error.startswith("The query failed: ") and "nosuch" in unknown.error
        assert unknown.error.endswith("(UNKNOWN_IDENTIFIER)"), unknown.error
        assert "tenant" not in unknown.error and "SELECT" not in unknown.error

        # An unreadable request gets the error reply, and the service keeps answering.
        reply = await nc.request(ANALYTICS_SQL, b'{"tenant_id": "x"}', timeout=30)
        assert "sql" in ErrorReply.model_validate_json(reply.data).error
        assert (await sql(nc, other, "SELECT count() FROM events")).rows == [[3]]


@pytest.mark.parametrize(
    ("raised", "said"),
    [
        (
            "Code: 60. DB::Exception: Unknown table expression identifier 'x'. In scope SELECT * "
            "FROM (SELECT * FROM events FINAL WHERE tenant_id = 'acme') AS x. (UNKNOWN_TABLE)",
            "The query failed: Unknown table expression identifier 'x' (UNKNOWN_TABLE)",
        ),
        (
            "HTTPDriver for http://10.0.0.7:8123 received ClickHouse error code 159\n Code: 159. "
            "DB::Exception: Timeout exceeded: elapsed 10.2 seconds: while processing query: "
            "'SELECT ...', required columns: 'a'. Stack trace: 0. DB::X (TIMEOUT_EXCEEDED)",
            "The query failed: Timeout exceeded: elapsed 10.2 seconds (TIMEOUT_EXCEEDED)",
        ),
        ("connection refused to 10.0.0.7:9000", "The query failed"),
    ],
)
def test_a_failed_query_tells_its_reason_without_the_query_or_addresses(
    raised: str, said: str
) -> None:
    assert sql_failure(RuntimeError(raised)) == said
