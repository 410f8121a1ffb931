"""Provisioning against a real nats-server: idempotent, concurrent-safe, updates in place."""

from __future__ import annotations

import asyncio

import nats
import pytest
from nats.js import api as js_api

from agentbus.contracts import BUCKETS, CONSUMERS, STREAMS
from agentbus.contracts.streams import BucketSpec, StreamSpec
from agentbus.runtime.provisioning import (
    ProvisioningError,
    ensure_bucket,
    ensure_stream,
    provision,
)


async def test_provision_is_idempotent_and_complete(nats_url: str) -> None:
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    try:
        # Several replicas starting at once must not trip over each other.
        await asyncio.gather(*(provision(js) for _ in range(3)))
        await provision(js)
        for spec in STREAMS:
            info = await js.stream_info(spec.name)
            assert sorted(info.config.subjects or []) == sorted(spec.subjects)
            assert info.config.retention == js_api.RetentionPolicy(spec.retention)
            assert info.config.duplicate_window == spec.duplicate_window_s
            assert info.config.max_consumers == spec.max_consumers
        for consumer in CONSUMERS:
            cinfo = await js.consumer_info(consumer.stream, consumer.durable)
            assert cinfo.config.ack_policy == js_api.AckPolicy.EXPLICIT
            assert cinfo.config.max_deliver == consumer.max_deliver
            assert cinfo.config.filter_subject == consumer.filter_subject
        for bucket in BUCKETS:
            if bucket.kind == "kv":
                await js.key_value(bucket.name)
            else:
                await js.object_store(bucket.name)
    finally:
        await nc.close()


async def test_dedupe_window_drops_a_republished_run(nats_url: str) -> None:
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    try:
        await provision(js)
        first = await js.publish(
            "agentbus.v1.runs.submit", b"{}", headers={"Nats-Msg-Id": "dedupe-run-1"}
        )
        second = await js.publish(
            "agentbus.v1.runs.submit", b"{}", headers={"Nats-Msg-Id": "dedupe-run-1"}
        )
        assert second.duplicate and second.seq == first.seq
    finally:
        await nc.close()


async def test_changed_stream_is_updated_and_retention_change_is_refused(nats_url: str) -> None:
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    spec = StreamSpec(
        name="PROVISION_TEST",
        subjects=("provision.test.a",),
        retention="limits",
        max_age_s=60,
        duplicate_window_s=10,
        description="test",
    )
    try:
        await ensure_stream(js, spec)
        wider = StreamSpec(**{**vars(spec), "subjects": ("provision.test.a", "provision.test.b")})
        await ensure_stream(js, wider)
        info = await js.stream_info("PROVISION_TEST")
        assert sorted(info.config.subjects or []) == ["provision.test.a", "provision.test.b"]
        # A stream made before its consumer limit was raised (one per open SSE stream) gets it.
        assert info.config.max_consumers == 1000
        roomier = StreamSpec(**{**vars(wider), "max_consumers": 20_000})
        await ensure_stream(js, roomier)
        info = await js.stream_info("PROVISION_TEST")
        assert info.config.max_consumers == 20_000
        # A stream made before the gateway followed runs without consumers gets direct gets
        # and its republish.
        assert not info.config.allow_direct and info.config.republish is None
        followed = StreamSpec(
            **{**vars(roomier), "allow_direct": True, "republish": ("provision.test.a", "copy.a")}
        )
        await ensure_stream(js, followed)
        info = await js.stream_info("PROVISION_TEST")
        assert info.config.allow_direct
        assert info.config.republish is not None
        assert (info.config.republish.src, info.config.republish.dest) == (
            "provision.test.a",
            "copy.a",
        )
        queue = StreamSpec(**{**vars(followed), "retention": "workqueue", "max_age_s": 30})
        with pytest.raises(ProvisioningError, match="retention"):
            await ensure_stream(js, queue)
    finally:
        await js.delete_stream("PROVISION_TEST")
        await nc.close()


async def test_object_bucket_gets_its_byte_limit_and_keeps_it_current(nats_url: str) -> None:
    """The documents bucket is bounded (issue 13, point 7): created with max_bytes, updated in
    place when the setting changes, and a limit the server cannot hold is a clear error."""
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    spec = BucketSpec(name="provision_obj_test", kind="object", description="t", max_bytes=2**20)
    try:
        await ensure_bucket(js, spec)
        assert (await js.stream_info("OBJ_provision_obj_test")).config.max_bytes == 2**20
        await ensure_bucket(js, spec, max_bytes=2**21)
        assert (await js.stream_info("OBJ_provision_obj_test")).config.max_bytes == 2**21
        with pytest.raises(ProvisioningError, match="max_bytes"):
            await ensure_bucket(js, spec, max_bytes=2**60)
        assert (await js.stream_info("OBJ_provision_obj_test")).config.max_bytes == 2**21
    finally:
        await js.delete_object_store("provision_obj_test")
        await nc.close()
