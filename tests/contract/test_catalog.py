"""The subject catalog, the stream definitions and the models agree with each other."""

from __future__ import annotations

import pydantic
import pytest

import agentbus.contracts as c
from agentbus.contracts import subjects as s
from agentbus.contracts.catalog import EXTERNAL, JETSTREAM, OPERATOR

PARTIES = {*c.SERVICES, EXTERNAL, OPERATOR, JETSTREAM}
STREAM_NAMES = {x.name for x in c.STREAMS}
# Models only ever nested inside another message.
NESTED = {
    "Passage",
    "SearchHit",
    "SearchFilters",
    "ThreadCheckpoint",
    "ChunkingOverrides",
    "ComponentHealth",
    "ErrorReply",  # the reply to an unreadable request on any request/reply subject
}


def test_every_subject_has_a_declared_producer_and_consumer() -> None:
    for spec in c.SUBJECTS:
        assert spec.producers, spec.subject
        assert spec.consumers, spec.subject
        assert set(spec.producers) <= PARTIES, spec.subject
        assert set(spec.consumers) <= PARTIES, spec.subject


def test_what_jetstream_publishes_is_a_streams_republish_destination() -> None:
    destinations = {x.republish[1] for x in c.STREAMS if x.republish}
    republished = {spec.subject for spec in c.SUBJECTS if JETSTREAM in spec.producers}
    assert republished == destinations
    for stream in c.STREAMS:
        if stream.republish:
            # The source is the stream's own subjects; the copy must not be stored again.
            assert stream.republish[0] in stream.subjects
            assert not any(
                s.matches(subject, stream.republish[1].replace(">", "x"))
                for x in c.STREAMS
                for subject in x.subjects
            )


def test_subjects_are_versioned_and_unique() -> None:
    names = [spec.subject for spec in c.SUBJECTS]
    assert len(names) == len(set(names))
    for name in names:
        assert name.startswith("agentbus.v1."), name


def test_every_stream_subject_is_captured_by_its_stream() -> None:
    for spec in c.SUBJECTS:
        if spec.kind != "stream":
            assert spec.stream is None, spec.subject
            continue
        assert spec.stream in STREAM_NAMES, spec.subject
        stream = c.streams.stream(spec.stream)
        example = spec.subject.replace(">", "x").replace("*", "x")
        assert any(s.matches(p, example) for p in stream.subjects), spec.subject


def test_every_agentbus_stream_carries_a_declared_subject() -> None:
    declared = {spec.stream for spec in c.SUBJECTS if spec.stream}
    for stream in c.STREAMS:
        if stream.name == "DEAD_LETTERS":  # holds JetStream's own advisories
            continue
        assert stream.name in declared, stream.name


def test_request_subjects_name_a_reply_and_queue_group() -> None:
    for spec in c.SUBJECTS:
        if spec.kind == "request":
            assert spec.reply is not None, spec.subject
            if "*" not in spec.subject:
                assert spec.queue_group in spec.consumers, spec.subject


def test_every_consumer_binds_a_subject_its_service_consumes() -> None:
    durables = [(x.stream, x.durable) for x in c.CONSUMERS]
    assert len(durables) == len(set(durables))
    for consumer in c.CONSUMERS:
        stream = c.streams.stream(consumer.stream)
        example = consumer.filter_subject.replace(">", "x").replace("*", "x")
        assert any(s.matches(p, example) for p in stream.subjects), consumer.durable
        covered = [
            spec
            for spec in c.SUBJECTS
            if s.matches(consumer.filter_subject, spec.subject.replace(">", "x").replace("*", "x"))
        ]
        assert covered, consumer.durable
        for spec in covered:
            assert consumer.service in spec.consumers, (consumer.durable, spec.subject)
        assert consumer.max_deliver > 1
        assert len(consumer.nak_delays_s) < consumer.max_deliver


def test_work_queues_have_exactly_one_consumer() -> None:
    # JetStream refuses overlapping consumers on a work-queue stream.
    for stream in c.STREAMS:
        if stream.retention == "workqueue":
            assert len([x for x in c.CONSUMERS if x.stream == stream.name]) == 1, stream.name


def test_every_message_model_is_carried_by_a_subject() -> None:
    exported = {
        name
        for name in c.__all__
        if isinstance(getattr(c, name), type)
        and issubclass(getattr(c, name), c.Contract)
        and name not in {"Contract", "Event", "TenantContract"}
    }
    carried = {m.__name__ for m in c.all_models()}
    assert exported - NESTED == carried


def test_buckets_are_used_by_services() -> None:
    for bucket in c.BUCKETS:
        assert bucket.users and set(bucket.users) <= set(c.SERVICES), bucket.name


@pytest.mark.parametrize("model", c.all_models(), ids=lambda m: m.__name__)
def test_tenant_and_event_fields(model: type[c.Contract]) -> None:
    fields = model.model_fields
    if model is c.ServiceHealth:
        assert "tenant_id" not in fields  # platform-level, documented exception
        return
    assert fields["tenant_id"].is_required()
    if issubclass(model, c.Event):
        assert "id" in fields and "ts" in fields
    assert model.model_config.get("extra") == "forbid"
    assert model.model_config.get("strict") is True


def test_spec_for_unknown_subject_is_an_error() -> None:
    with pytest.raises(KeyError):
        c.spec_for("agentbus.v2.runs.submit")
    assert c.spec_for(s.run_events("r1")).stream == "RUN_EVENTS"


def test_extra_fields_are_rejected() -> None:
    with pytest.raises(pydantic.ValidationError):
        c.SearchRequest.model_validate({"tenant_id": "acme", "query": "x", "sql": "DROP"})
