"""The LangGraph API's run records over the real PostgreSQL: recording a run twice (a cron tick
created again after its replica died) says so, so the second attempt's clean-up leaves the first
attempt's record alone (`LangGraphRuns.create`)."""

from __future__ import annotations

import uuid

from agentbus.gateway.langgraph.records import Records
from agentbus.runtime.testing import scratch_database


async def test_a_second_recording_of_a_run_reports_it_was_there(
    service_env: dict[str, str],
) -> None:
    async with scratch_database(service_env["AGENTBUS_POSTGRES_DSN"], "records") as pool:
        records = Records(pool)
        run, thread = str(uuid.uuid4()), str(uuid.uuid4())
        assert await records.add_run("t1", run, thread, "enqueue", ["values"]) is True
        assert await records.add_run("t1", run, thread, "reject", ["updates"]) is False
        kept = await pool.fetchrow(
            "SELECT multitask_strategy, stream_modes FROM langgraph_runs WHERE run_id = $1", run
        )
        assert kept is not None and kept["multitask_strategy"] == "enqueue"
        # Another tenant's run of the same id is its own record.
        assert await records.add_run("t2", run, thread, "reject", ["values"]) is True
