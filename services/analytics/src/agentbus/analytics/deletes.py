"""Deleting a tenant's domain events by id prefix (`agentbus.v1.analytics.delete_events`).

An outside system that loaded events with ids of its own choosing can take them out again: the
sample organisation's ids start with `sample-`, and `agentbus demo --remove` asks for those.
The `events` rows go with one lightweight DELETE, applied before the reply; the prefix is
matched with `startsWith` as a server-side parameter, never spliced into the text. The DORA
tables derived from them (migrations.py) follow before the reply too: `dora_deployments` rows
carry the event id and go the same way; `dora_lead` and `dora_incidents` hold one aggregate per
commit sha / incident id, so the keys the deleted events touched are deleted and derived again
from the events that remain.
"""

from __future__ import annotations

import logging

from faststream.nats.annotations import NatsMessage
from opentelemetry import trace

from agentbus.contracts import DeleteEvents, ErrorReply, EventsDeleted
from agentbus.contracts import subjects as s
from agentbus.runtime.chassis import Service
from agentbus.runtime.consuming import parse_or_error

from .migrations import INCIDENTS, LEAD
from .store import ClickHouseStore

log = logging.getLogger("agentbus.analytics")
tracer = trace.get_tracer("agentbus.analytics")

_WHERE = "tenant_id = {t:String} AND startsWith(id, {prefix:String})"


async def delete_events(store: ClickHouseStore, req: DeleteEvents) -> EventsDeleted:
    args = {"t": req.tenant_id, "prefix": req.id_prefix}
    # Distinct ids: a redelivered copy not merged yet is one event, as the queries count it.
    rows = await store.query(f"SELECT uniqExact(id) FROM events WHERE {_WHERE}", args)
    found = int(rows[0][0]) if rows else 0
    if found:
        shas = await store.query(
            f"""
            SELECT DISTINCT arrayJoin(if(kind = 'commit', [sha], commits)) AS s FROM events
            WHERE {_WHERE} AND kind IN ('commit', 'deployment') AND s != ''
            """,
            args,
        )
        incidents = await store.query(
            f"SELECT DISTINCT incident_id FROM events WHERE {_WHERE} AND kind = 'incident'", args
        )
        await store.execute(f"DELETE FROM events WHERE {_WHERE}", args)
        await store.execute(f"DELETE FROM dora_deployments WHERE {_WHERE}", args)
        await _derive_again(store, "dora_lead", "sha", [r[0] for r in shas], req.tenant_id)
        await _derive_again(
            store, "dora_incidents", "incident_id", [r[0] for r in incidents], req.tenant_id
        )
    return EventsDeleted(tenant_id=req.tenant_id, deleted=found)


_DERIVED = {"dora_lead": LEAD, "dora_incidents": INCIDENTS}


async def _derive_again(
    store: ClickHouseStore, table: str, key: str, keys: list[str], t: str
) -> None:
    """Replace the aggregates of `keys` by what the remaining events give (min/max cannot be
    un-done row by row). An event inserted meanwhile is in the new rows or lands after them:
    either way it counts once, as min/max absorb copies."""
    if not keys:
        return
    args = {"t": t, "keys": keys}
    where = f"tenant_id = {{t:String}} AND {key} IN {{keys:Array(String)}}"
    await store.execute(f"DELETE FROM {table} WHERE {where}", args)
    await store.execute(
        f"INSERT INTO {table} SELECT * FROM ({_DERIVED[table]}) WHERE {where}", args
    )


def register(service: Service, store: ClickHouseStore) -> None:
    """Answer DeleteEvents on the service's broker (queue group analytics)."""

    @service.broker.subscriber(
        s.ANALYTICS_DELETE_EVENTS,
        queue="analytics",
        title="analytics.delete_events",
        description="DeleteEvents -> EventsDeleted (or ErrorReply for an unreadable request)",
    )
    async def on_delete_events(msg: NatsMessage) -> EventsDeleted | ErrorReply:
        subject = msg.raw_message.subject
        req = parse_or_error(msg.body, DeleteEvents, service.rejects, subject)
        if isinstance(req, ErrorReply):
            return req
        attributes = {
            "db.system.name": "clickhouse",
            "db.operation.name": "DELETE",
            "agentbus.tenant_id": req.tenant_id,
        }
        with tracer.start_as_current_span("analytics.delete_events", attributes=attributes):
            try:
                return await delete_events(store, req)
            except Exception as exc:  # the caller learns why; nothing was half-deleted by us
                log.exception("deleting events failed", extra={"tenant_id": req.tenant_id})
                return EventsDeleted(tenant_id=req.tenant_id, error=f"delete failed: {exc}")
