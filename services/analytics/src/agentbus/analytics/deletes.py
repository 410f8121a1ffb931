"""Deleting a tenant's domain events by id prefix (`agentbus.v1.analytics.delete_events`).

An outside system that loaded events with ids of its own choosing can take them out again: the
sample organisation's ids start with `sample-`, and `agentbus demo --remove` asks for those.
Only the `events` table holds domain events (the DORA columns are derived on insert), so one
lightweight DELETE removes them from every query at once, applied before the reply. The prefix
is matched with `startsWith` as a server-side parameter, never spliced into the text.
"""

from __future__ import annotations

import logging

from faststream.nats.annotations import NatsMessage
from opentelemetry import trace

from agentbus.contracts import DeleteEvents, ErrorReply, EventsDeleted
from agentbus.contracts import subjects as s
from agentbus.runtime.chassis import Service
from agentbus.runtime.consuming import parse_or_error

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
        await store.execute(f"DELETE FROM events WHERE {_WHERE}", args)
    return EventsDeleted(tenant_id=req.tenant_id, deleted=found)


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
