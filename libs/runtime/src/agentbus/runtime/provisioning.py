"""Create or update the JetStream streams, consumers and buckets declared in the contracts.

Idempotent and safe to run from every replica at once: an existing object with the same config
is left alone, a changed one is updated in place where JetStream allows it.
"""

from __future__ import annotations

import logging

from nats.js import JetStreamContext
from nats.js import api as js_api
from nats.js.errors import APIError, BadRequestError, BucketNotFoundError, NotFoundError

from agentbus.contracts.catalog import provisioned_by
from agentbus.contracts.streams import BUCKETS, CONSUMERS, BucketSpec, ConsumerSpec, StreamSpec
from agentbus.contracts.streams import STREAMS as ALL_STREAMS

log = logging.getLogger("agentbus.provisioning")


class ProvisioningError(RuntimeError):
    pass


def stream_config(spec: StreamSpec, replicas: int = 1) -> js_api.StreamConfig:
    return js_api.StreamConfig(
        num_replicas=replicas,
        name=spec.name,
        description=spec.description,
        subjects=list(spec.subjects),
        retention=js_api.RetentionPolicy(spec.retention),
        max_age=spec.max_age_s,
        max_bytes=spec.max_bytes,
        duplicate_window=spec.duplicate_window_s,
        storage=js_api.StorageType(spec.storage),
        discard=js_api.DiscardPolicy.OLD,
        max_consumers=spec.max_consumers,
        allow_direct=spec.allow_direct,
        republish=(
            js_api.RePublish(src=spec.republish[0], dest=spec.republish[1])
            if spec.republish
            else None
        ),
    )


def consumer_config(spec: ConsumerSpec) -> js_api.ConsumerConfig:
    return js_api.ConsumerConfig(
        durable_name=spec.durable,
        description=spec.description,
        filter_subject=spec.filter_subject,
        ack_policy=js_api.AckPolicy.EXPLICIT,
        ack_wait=spec.ack_wait_s,
        max_deliver=spec.max_deliver,
        max_ack_pending=spec.max_ack_pending,
        deliver_policy=js_api.DeliverPolicy.ALL,
    )


def _republish(config: js_api.StreamConfig) -> tuple[str | None, str | None] | None:
    return (config.republish.src, config.republish.dest) if config.republish else None


async def ensure_stream(js: JetStreamContext, spec: StreamSpec, replicas: int = 1) -> None:
    wanted = stream_config(spec, replicas)
    try:
        info = await js.stream_info(spec.name)
    except NotFoundError:
        try:
            await js.add_stream(wanted)
            log.info("created stream", extra={"stream": spec.name})
            return
        except BadRequestError:
            info = await js.stream_info(spec.name)  # another replica won the race
    have = info.config
    if (
        sorted(have.subjects or []) != sorted(wanted.subjects or [])
        or have.max_age != wanted.max_age
        or have.duplicate_window != wanted.duplicate_window
        or have.description != wanted.description
        or have.max_consumers != wanted.max_consumers
        or bool(have.allow_direct) != wanted.allow_direct
        or _republish(have) != _republish(wanted)
    ):
        if have.retention != wanted.retention:
            raise ProvisioningError(
                f"stream {spec.name} exists with retention {have.retention}, contracts say "
                f"{wanted.retention}: JetStream cannot change it in place"
            )
        await js.update_stream(wanted)
        log.info("updated stream", extra={"stream": spec.name})


async def ensure_consumer(js: JetStreamContext, spec: ConsumerSpec) -> None:
    # add_consumer with the same config is a no-op; a changed one updates the durable in place.
    await js.add_consumer(spec.stream, consumer_config(spec))


async def ensure_bucket(
    js: JetStreamContext, spec: BucketSpec, replicas: int = 1, max_bytes: int | None = None
) -> None:
    """Create the bucket if missing; an object bucket's byte limit is set or updated in place
    (`max_bytes` overrides the contracts' value; JetStream refuses one the disk cannot hold)."""
    if spec.kind == "kv":
        try:
            await js.key_value(spec.name)
        except BucketNotFoundError:
            await js.create_key_value(
                js_api.KeyValueConfig(
                    bucket=spec.name,
                    description=spec.description,
                    history=spec.history,
                    ttl=spec.ttl_s,
                    replicas=replicas,
                )
            )
    else:
        limit = spec.max_bytes if max_bytes is None else max_bytes
        try:
            await js.object_store(spec.name)
        except BucketNotFoundError:
            try:
                await js.create_object_store(
                    spec.name,
                    js_api.ObjectStoreConfig(
                        description=spec.description, replicas=replicas, max_bytes=limit
                    ),
                )
                return
            except APIError as exc:  # 500 "insufficient resources" when the disk is too small
                if "already in use" not in str(exc.description or ""):
                    raise ProvisioningError(
                        f"bucket {spec.name} (max_bytes {limit}) not created: {exc.description}"
                    ) from None
        await _ensure_object_limit(js, spec, limit)


async def _ensure_object_limit(js: JetStreamContext, spec: BucketSpec, limit: int) -> None:
    stream = f"OBJ_{spec.name}"
    config = (await js.stream_info(stream)).config
    if config.max_bytes == limit:
        return
    config.max_bytes = limit
    try:
        await js.update_stream(config)
    except APIError as exc:
        raise ProvisioningError(
            f"bucket {spec.name}: max_bytes {limit} refused: {exc.description}"
        ) from None
    log.info("updated bucket limit", extra={"bucket": spec.name, "max_bytes": limit})


async def provision(
    js: JetStreamContext,
    service: str | None = None,
    *,
    replicas: int = 1,
    bucket_max_bytes: dict[str, int] | None = None,
) -> None:
    """Ensure the streams and buckets `service` uses exist, and the durables it binds.

    Each service may create only its own (the NATS permissions say so); without a service,
    everything (tests and tools with an unrestricted connection). `replicas` applies to what is
    created here (3 on a JetStream cluster, so losing a node loses nothing); an existing stream
    keeps its replica count, which an operator changes with `nats stream edit`.
    `bucket_max_bytes` overrides object buckets' byte limits by name (from the settings).
    """
    streams, buckets = (ALL_STREAMS, BUCKETS) if service is None else provisioned_by(service)
    for stream in streams:
        await ensure_stream(js, stream, replicas)
    for bucket in buckets:
        await ensure_bucket(js, bucket, replicas, (bucket_max_bytes or {}).get(bucket.name))
    for consumer in CONSUMERS:
        if service is None or consumer.service == service:
            await ensure_consumer(js, consumer)
