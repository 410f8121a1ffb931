"""The generated NATS permissions follow the catalog: pure logic, no server.

deploy/tests/test_nats_permissions.py checks the same rules against a real nats-server.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from agentbus.contracts import BUCKETS, CONSUMERS, SERVICES, STREAMS, SUBJECTS
from agentbus.contracts import permissions as p
from agentbus.contracts import subjects as s
from agentbus.contracts.catalog import EXTERNAL, OPERATOR

# Who stands for the catalog's non-service parties: written out here, not imported, so the test
# is an independent statement of the rule. Tenants' publishers are scoped apart (see below).
PARTY_USERS = {EXTERNAL: {"operator"}, OPERATOR: {"operator"}}
TENANTS = ("acme", "globex-2")
USERS = (*SERVICES, "operator", "publisher-acme", "publisher-globex-2")
CATALOG_PATTERNS = {spec.subject for spec in SUBJECTS} | {s.health(x) for x in SERVICES}


def users_of(parties: tuple[str, ...]) -> set[str]:
    return set().union(*(PARTY_USERS.get(party, {party}) for party in parties))


def expected_publish(user: str) -> set[str]:
    if user.startswith("publisher-"):
        return set()  # only tenant-scoped subjects, tested apart
    return {spec.subject for spec in SUBJECTS if user in users_of(spec.producers)}


def expected_subscribe(user: str) -> set[str]:
    wanted = set()
    for spec in SUBJECTS:
        if user in users_of(spec.consumers):
            wanted.add(s.health(user) if spec.subject == s.HEALTH_ALL else spec.subject)
    return wanted


def catalog_part(subjects: tuple[str, ...]) -> set[str]:
    return {x for x in subjects if x in CATALOG_PATTERNS}


@pytest.fixture(scope="module")
def users() -> dict[str, p.UserPermissions]:
    return {u.user: u for u in p.all_users(publisher_tenants=TENANTS)}


def test_one_user_per_service_plus_operator_and_one_publisher_per_tenant(
    users: dict[str, p.UserPermissions],
) -> None:
    assert tuple(users) == USERS
    assert tuple(u.user for u in p.all_users()) == (*SERVICES, "operator")


@pytest.mark.parametrize("tenant", TENANTS)
def test_a_publisher_publishes_only_its_own_tenants_events_and_ingest_jobs(
    users: dict[str, p.UserPermissions], tenant: str
) -> None:
    perms = users[f"publisher-{tenant}"]
    assert set(perms.publish_subjects()) == {
        f"agentbus.v1.events.{tenant}.>",
        f"agentbus.v1.ingest.submit.{tenant}",
    }
    assert perms.subscribe_subjects() == (f"_INBOX_publisher-{tenant}.>",)
    assert not perms.allow_responses
    assert perms.password_env == f"NATS_PUBLISHER_{tenant.upper().replace('-', '_')}_PASSWORD"


def test_publisher_tenants_are_subject_tokens_and_their_passwords_distinct(
    tmp_path: Path,
) -> None:
    for bad in ("acme.>", "*", "a b", ""):
        with pytest.raises(ValueError):
            p.all_users(publisher_tenants=[bad])
    with pytest.raises(ValueError, match="share"):
        p.all_users(publisher_tenants=["acme-x", "acme_x"])
    listed = tmp_path / "publishers.txt"
    listed.write_text("# issued publishers\nacme\n\nglobex-2  # since 2026\n")
    assert p.read_publishers(listed) == ("acme", "globex-2")


@pytest.mark.parametrize("user", USERS)
def test_catalog_subjects_are_exactly_what_the_user_produces_and_consumes(
    users: dict[str, p.UserPermissions], user: str
) -> None:
    perms = users[user]
    assert catalog_part(perms.publish_subjects()) == expected_publish(user)
    assert catalog_part(perms.subscribe_subjects()) == expected_subscribe(user)


@pytest.mark.parametrize("user", USERS)
def test_no_blanket_wildcards(users: dict[str, p.UserPermissions], user: str) -> None:
    blanket = {">", "*.>", "$JS.>", "$JS.API.>", "$JS.API.*.>", "agentbus.>", "agentbus.v1.>"}
    perms = users[user]
    for subject in (*perms.publish_subjects(), *perms.subscribe_subjects()):
        assert subject not in blanket, (user, subject)
        assert not subject.startswith("$JS.API.STREAM.DELETE"), (user, subject)
        assert not subject.startswith("$JS.API.CONSUMER.DELETE.") or subject.endswith(".*")


def test_subscriptions_beyond_the_catalog_are_only_inbox_and_micro(
    users: dict[str, p.UserPermissions],
) -> None:
    for user, perms in users.items():
        extra = set(perms.subscribe_subjects()) - expected_subscribe(user)
        allowed = {f"_INBOX_{user}.>"}
        if user in SERVICES:
            name = p.micro_name(user)
            allowed |= {"$SRV.*", f"$SRV.*.{name}", f"$SRV.*.{name}.*"}
        assert extra == allowed, user


def test_durable_consumers_belong_to_their_service_only(
    users: dict[str, p.UserPermissions],
) -> None:
    for consumer in CONSUMERS:
        pull = f"$JS.API.CONSUMER.MSG.NEXT.{consumer.stream}.{consumer.durable}"
        ack = f"$JS.ACK.{consumer.stream}.{consumer.durable}.>"
        for user, perms in users.items():
            has = {pull, ack} <= set(perms.publish_subjects())
            assert has == (user == consumer.service), (user, consumer.durable)


def test_bucket_data_reads_and_purges_only_for_bucket_users(
    users: dict[str, p.UserPermissions],
) -> None:
    for bucket in BUCKETS:
        stream = p.bucket_stream(bucket)
        touch = {
            p.bucket_subjects(bucket),
            f"$JS.API.STREAM.MSG.GET.{stream}",
            f"$JS.API.DIRECT.GET.{stream}",
            f"$JS.API.STREAM.PURGE.{stream}",
        }
        for user, perms in users.items():
            has = touch & set(perms.publish_subjects())
            assert has == (touch if user in bucket.users else set()), (user, bucket.name)


@pytest.mark.parametrize("user", USERS)
def test_every_user_has_its_own_inbox_and_no_other(
    users: dict[str, p.UserPermissions], user: str
) -> None:
    inboxes = {x for x in users[user].subscribe_subjects() if x.startswith("_INBOX")}
    assert inboxes == {f"{p.inbox_prefix(user)}.>"} == {f"_INBOX_{user}.>"}


def test_only_services_answer_requests(users: dict[str, p.UserPermissions]) -> None:
    for user, perms in users.items():
        assert perms.allow_responses == (user in SERVICES), user


def own_streams(service: str) -> set[str]:
    """What a service produces into or consumes from, its dead letters and its buckets."""
    names = {
        spec.stream
        for spec in SUBJECTS
        if spec.stream and service in {*spec.producers, *spec.consumers}
    }
    if any(c.service == service for c in CONSUMERS):
        names.add("DEAD_LETTERS")
    return names | {p.bucket_stream(b) for b in BUCKETS if service in b.users}


def test_services_administer_only_their_own_streams(users: dict[str, p.UserPermissions]) -> None:
    names = {x.name for x in STREAMS} | {p.bucket_stream(b) for b in BUCKETS}
    provisioned: set[str] = set()
    for user, perms in users.items():
        publish = set(perms.publish_subjects())
        mine = own_streams(user) if user in SERVICES else set()
        for name in names:
            for verb in ("CREATE", "UPDATE"):
                assert (f"$JS.API.STREAM.{verb}.{name}" in publish) == (name in mine), (user, name)
        provisioned |= mine
    assert provisioned == names  # whichever replica starts first, every stream gets made


def test_render_uses_environment_references_not_passwords() -> None:
    text = p.render_config(p.all_users(publisher_tenants=TENANTS))
    for user in USERS:
        assert f'user: "{user}"' in text
        assert f"password: $NATS_{user.upper().replace('-', '_')}_PASSWORD" in text
    assert "jetstream: enabled" in text
    assert "jetstream" not in p.render_config(jetstream=False).split("authorization {")[1]
    # Deterministic, so the checked-in file can be compared.
    assert text == p.render_config(p.all_users(publisher_tenants=TENANTS))


def test_cli_writes_and_checks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "nats" / "auth.conf"
    assert p.main(["--out", str(out), "--check"]) == 1
    assert "stale" in capsys.readouterr().err
    assert p.main(["--out", str(out)]) == 0
    assert out.read_text() == p.render_config()
    assert p.main(["--out", str(out), "--check"]) == 0
    out.write_text(out.read_text() + "# edited\n")
    assert p.main(["--out", str(out), "--check"]) == 1
    assert p.main([]) == 0
    assert capsys.readouterr().out == p.render_config()
    listed = tmp_path / "publishers.txt"
    listed.write_text("acme\n")
    assert p.main(["--publishers", str(listed), "--publisher", "globex-2"]) == 0
    assert capsys.readouterr().out == p.render_config(p.all_users(publisher_tenants=TENANTS))
    with pytest.raises(SystemExit):
        p.main(["--publisher", "acme.>"])


def test_unknown_service_is_refused() -> None:
    with pytest.raises(KeyError):
        p.service_permissions("billing")
