"""Deleting a tenant's domain events by id prefix over the bus (what `agentbus demo --remove`
asks for): only that tenant's events with that prefix go, DORA numbers follow at once, a second
delete finds nothing, and a request that breaks the contract is an ErrorReply."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from nats.aio.client import Client as NatsClient
from nats.errors import NoRespondersError

from agentbus.analytics.app import build
from agentbus.analytics.settings import AnalyticsSettings
from agentbus.contracts import DeleteEvents, DomainEvent, ErrorReply, EventsDeleted
from agentbus.contracts import subjects as s
from agentbus.runtime.testing import running

from .support import as_dicts, ask, eventually

WIDE = {"period": "30d"}


def deployment(tenant: str, id_: str, day: int) -> DomainEvent:
    ts = datetime.now(UTC) - timedelta(days=day, hours=1)
    data: dict[str, Any] = {"service": "api", "deployment_id": id_}
    return DomainEvent(id=id_, tenant_id=tenant, source="ci", type="deployment", ts=ts, data=data)


async def deployments(nc: NatsClient, tenant: str) -> int:
    rows = as_dicts(await ask(nc, tenant, "dora", **WIDE))
    return next((int(r["deployments"]) for r in rows if r["service"] == "*"), 0)


async def delete(nc: NatsClient, body: str) -> bytes:
    reply = await nc.request(s.ANALYTICS_DELETE_EVENTS, body.encode(), timeout=30)
    return reply.data


async def test_deletes_only_the_tenants_events_with_the_prefix(
    analytics_env: dict[str, str], nc: NatsClient, tenant: str
) -> None:
    other = tenant + "b"
    ours = [deployment(tenant, f"sample-ci-deployment-{n}", n % 20) for n in range(12)]
    kept = [deployment(tenant, f"dep-{n}", n) for n in range(5)]
    theirs = [deployment(other, f"sample-ci-deployment-{n}", n) for n in range(3)]
    js = nc.jetstream()
    # ours[0] twice, under two message ids: stored twice until merged, one event all the same.
    for n, event in enumerate([*ours, ours[0], *kept, *theirs]):
        subject = s.domain_event(event.tenant_id, event.source, event.type)
        body = event.model_dump_json().encode()
        await js.publish(subject, body, headers={"Nats-Msg-Id": f"{event.id}-{n}"})

    async with running(build(AnalyticsSettings())):

        async def stored() -> bool:
            return (await deployments(nc, tenant), await deployments(nc, other)) == (17, 3)

        await eventually(stored, what="every deployment stored")

        async def answered() -> bool:
            # A prefix nothing has deletes nothing. Asked until the service's last subscriber
            # is up: FastStream subscribes them one after another as the service starts.
            none = DeleteEvents(tenant_id=tenant, id_prefix="nothing-")
            try:
                raw = await delete(nc, none.model_dump_json())
            except NoRespondersError:
                return False
            assert EventsDeleted.model_validate_json(raw).deleted == 0
            return True

        await eventually(answered, what="the delete subject answered")

        req = DeleteEvents(tenant_id=tenant, id_prefix="sample-")
        done = EventsDeleted.model_validate_json(await delete(nc, req.model_dump_json()))
        assert (done.tenant_id, done.deleted, done.error) == (tenant, 12, None)
        # Applied before the reply: the next query already counts only what is left.
        assert await deployments(nc, tenant) == len(kept)
        assert await deployments(nc, other) == len(theirs)

        again = EventsDeleted.model_validate_json(await delete(nc, req.model_dump_json()))
        assert again.deleted == 0 and again.error is None
        # A prefix that is too short (or a wildcard) would reach far more than one loader's ids.
        for prefix in ("s", "%", "sample-*"):
            bad = await delete(nc, f'{{"tenant_id": "{tenant}", "id_prefix": "{prefix}"}}')
            assert ErrorReply.model_validate_json(bad).reason == "schema", prefix
        assert await deployments(nc, tenant) == len(kept)
