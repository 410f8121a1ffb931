"""NATS users and subject permissions, generated from the contracts (DESIGN.md §3 as data).

One user per service, plus `operator` (the CLI and people) and one `publisher-<tenant>` per tenant
whose outside systems feed the bus: it may publish only `agentbus.v1.events.<tenant>.>` and
`agentbus.v1.ingest.submit.<tenant>`, so tenancy is bound to the NATS identity (the consumers
reject a body whose tenant is not the subject's). A service may publish exactly the catalog
subjects it produces and subscribe exactly the ones it consumes; on top of that it gets only the
protocol subjects its client libraries need:

- `_INBOX_<user>.>` (subscribe): replies to its requests, JetStream API answers, publish acks and
  ordered-consumer deliveries. Each user connects with its own `inbox_prefix`, so nobody can
  listen on another's replies (the shared `_INBOX.>` would show every tenant's traffic).
- `allow_responses`: a responder (request/reply handlers, the micro-service endpoints) may answer
  on the reply subject of a request it received, and only once per request.
- JetStream API, scoped per stream and per durable: pulling from and acking its own durables,
  ordered/ephemeral consumers on the streams it reads without a durable, and the KV and Object
  Store buckets `streams.BUCKETS` lists it as a user of. Nobody else may read, write or purge a
  bucket.
- Provisioning: every service creates or updates, at start-up, the streams it produces into or
  consumes from, its buckets and its own durables (`agentbus.runtime.provisioning`), and nothing
  else: together they make every stream, whichever replica starts first.
- The NATS micro-service API: `$SRV.PING|INFO|STATS` for its own name and its health endpoint.

`python -m agentbus.contracts.permissions --out deploy/nats/nats-auth.conf --publishers
deploy/nats/publishers.txt` (`make nats-config`) renders a server configuration; passwords are
`$NATS_<USER>_PASSWORD` environment references, never literals.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from . import subjects as s
from .catalog import EXTERNAL, JETSTREAM, OPERATOR, SUBJECTS, SubjectSpec, provisioned_by
from .health import SERVICES
from .streams import BUCKETS, BucketSpec, ConsumerSpec, consumers_of

JS_API = "$JS.API"
MICRO_PREFIX = "$SRV"

OPERATOR_USER = "operator"
PUBLISHER_PREFIX = "publisher-"

# Catalog parties that are not services map to these users. Other systems publish with their
# tenant's `publisher-<tenant>` (scoped apart, see publisher_permissions); the operator may also
# publish what they publish (replays, manual events).
PARTY_USERS: dict[str, tuple[str, ...]] = {
    EXTERNAL: (OPERATOR_USER,),
    OPERATOR: (OPERATOR_USER,),
    # The server republishes inside the account: no user publishes there.
    JETSTREAM: (),
}


def micro_name(service: str) -> str:
    """The name `agentbus.runtime.chassis` registers its NATS micro service under."""
    return f"agentbus-{service}"


def inbox_prefix(user: str) -> str:
    """The inbox prefix `user` connects with (nats-py `inbox_prefix`). Replies to its requests,
    JetStream API answers, publish acks and its ordered-consumer deliveries travel under it, and
    only `user` may subscribe there."""
    return f"_INBOX_{user}"


def inbox(user: str) -> str:
    return f"{inbox_prefix(user)}.>"


def password_env(user: str) -> str:
    """The environment variable the server reads `user`'s password (or bcrypt hash) from."""
    return f"NATS_{re.sub(r'[^A-Za-z0-9]', '_', user).upper()}_PASSWORD"


def publisher_user(tenant_id: str) -> str:
    """The NATS user of `tenant_id`'s outside systems."""
    return PUBLISHER_PREFIX + s.token(tenant_id, "tenant id")


def bucket_stream(bucket: BucketSpec) -> str:
    """The stream behind a bucket, as nats-py names it."""
    return f"KV_{bucket.name}" if bucket.kind == "kv" else f"OBJ_{bucket.name}"


def bucket_subjects(bucket: BucketSpec) -> str:
    return f"$KV.{bucket.name}.>" if bucket.kind == "kv" else f"$O.{bucket.name}.>"


@dataclass(frozen=True)
class Rule:
    subject: str
    why: str


@dataclass(frozen=True)
class UserPermissions:
    user: str
    description: str
    publish: tuple[Rule, ...]
    subscribe: tuple[Rule, ...]
    allow_responses: bool

    @property
    def password_env(self) -> str:
        return password_env(self.user)

    def publish_subjects(self) -> tuple[str, ...]:
        return tuple(r.subject for r in self.publish)

    def subscribe_subjects(self) -> tuple[str, ...]:
        return tuple(r.subject for r in self.subscribe)


class _Rules:
    """Ordered, de-duplicated rules; the first reason given for a subject is kept."""

    def __init__(self) -> None:
        self._rules: dict[str, str] = {}

    def add(self, why: str, *subjects: str) -> None:
        for subject in subjects:
            self._rules.setdefault(subject, why)

    def freeze(self) -> tuple[Rule, ...]:
        return tuple(Rule(subject, why) for subject, why in self._rules.items())


def _users_of(party: str) -> tuple[str, ...]:
    return PARTY_USERS.get(party, (party,))


def _subscribe_subject(spec: SubjectSpec, user: str) -> str:
    # Every service answers health requests, but only for itself: narrowing the wildcard keeps
    # one service from answering (or eavesdropping on) another's health endpoint.
    if spec.subject == s.HEALTH_ALL and user in SERVICES:
        return s.health(user)
    return spec.subject


def _catalog_rules(user: str, pub: _Rules, sub: _Rules) -> None:
    """Publish/subscribe from the catalog."""
    for spec in SUBJECTS:
        where = f"stream {spec.stream}" if spec.stream else spec.kind
        if any(user in _users_of(p) for p in spec.producers):
            pub.add(f"produces {spec.subject} ({where})", spec.subject)
        if any(user in _users_of(c) for c in spec.consumers):
            sub.add(f"consumes {spec.subject} ({where})", _subscribe_subject(spec, user))


def _durable_rules(consumer: ConsumerSpec, pub: _Rules) -> None:
    stream, durable = consumer.stream, consumer.durable
    why = f"durable {durable} on {stream}"
    pub.add(
        why,
        f"{JS_API}.CONSUMER.INFO.{stream}.{durable}",
        # nats-py creates durables with DURABLE.CREATE, newer clients with CREATE (+ filter).
        f"{JS_API}.CONSUMER.DURABLE.CREATE.{stream}.{durable}",
        f"{JS_API}.CONSUMER.CREATE.{stream}.{durable}",
        f"{JS_API}.CONSUMER.CREATE.{stream}.{durable}.>",
        f"{JS_API}.CONSUMER.MSG.NEXT.{stream}.{durable}",
        # ack, nak, in_progress and term all publish to the delivered message's $JS.ACK subject.
        f"$JS.ACK.{stream}.{durable}.>",
    )


def _reader_rules(stream: str, why: str, pub: _Rules) -> None:
    """Ordered or ephemeral consumers and direct gets on `stream` (replay, KV/Object reads)."""
    pub.add(
        why,
        f"{JS_API}.CONSUMER.CREATE.{stream}",
        f"{JS_API}.CONSUMER.CREATE.{stream}.>",
        f"{JS_API}.CONSUMER.INFO.{stream}.*",
        f"{JS_API}.CONSUMER.DELETE.{stream}.*",
        f"{JS_API}.CONSUMER.MSG.NEXT.{stream}.*",
        f"{JS_API}.STREAM.MSG.GET.{stream}",
        f"{JS_API}.DIRECT.GET.{stream}",
        f"{JS_API}.DIRECT.GET.{stream}.>",
        # Push consumers (ordered ones included) need flow-control replies; acks for explicit ones.
        f"$JS.FC.{stream}.>",
        f"$JS.ACK.{stream}.>",
    )


def _bucket_writer_rules(bucket: BucketSpec, why: str, pub: _Rules) -> None:
    """Put into a bucket: data subjects, the stream lookups and purges that puts perform."""
    stream = bucket_stream(bucket)
    pub.add(
        why,
        bucket_subjects(bucket),
        f"{JS_API}.STREAM.INFO.{stream}",
        # Object puts read the current meta first and purge the chunks they replace.
        f"{JS_API}.STREAM.MSG.GET.{stream}",
        f"{JS_API}.DIRECT.GET.{stream}",
        f"{JS_API}.DIRECT.GET.{stream}.>",
        f"{JS_API}.STREAM.PURGE.{stream}",
    )


def _provisioning_rules(service: str, pub: _Rules) -> None:
    why = "provisioning its own streams at start-up (agentbus.runtime.provisioning)"
    streams, buckets = provisioned_by(service)
    names = [x.name for x in streams] + [bucket_stream(b) for b in buckets]
    for name in names:
        pub.add(
            why,
            f"{JS_API}.STREAM.INFO.{name}",
            f"{JS_API}.STREAM.CREATE.{name}",
            f"{JS_API}.STREAM.UPDATE.{name}",
        )


def service_permissions(service: str) -> UserPermissions:
    if service not in SERVICES:
        raise KeyError(f"not a service: {service!r}")
    pub, sub = _Rules(), _Rules()
    _catalog_rules(service, pub, sub)

    sub.add("its own inbox: replies, JetStream API answers and publish acks", inbox(service))
    pub.add("JetStream account info (health check)", f"{JS_API}.INFO")
    pub.add("find a stream by subject when binding a consumer", f"{JS_API}.STREAM.NAMES")
    _provisioning_rules(service, pub)

    durable_streams: set[str] = set()
    for consumer in consumers_of(service):
        _durable_rules(consumer, pub)
        durable_streams.add(consumer.stream)
    for spec in SUBJECTS:
        # A stream it consumes without a durable of its own is read with ordered consumers
        # (the gateway replays RUN_EVENTS and INGEST_EVENTS from any sequence).
        read = spec.stream is not None and service in spec.consumers
        if read and spec.stream is not None and spec.stream not in durable_streams:
            _reader_rules(spec.stream, f"reads {spec.stream} with ordered consumers", pub)

    for bucket in BUCKETS:
        if service in bucket.users:
            why = f"{bucket.kind} bucket {bucket.name}"
            _bucket_writer_rules(bucket, why, pub)
            _reader_rules(bucket_stream(bucket), why + " (get, watch)", pub)

    name = micro_name(service)
    sub.add(
        "NATS micro-service discovery of this service",
        f"{MICRO_PREFIX}.*",
        f"{MICRO_PREFIX}.*.{name}",
        f"{MICRO_PREFIX}.*.{name}.*",
    )
    return UserPermissions(
        user=service,
        description=f"the {service} service",
        publish=pub.freeze(),
        subscribe=sub.freeze(),
        # Every service answers at least its health endpoint and $SRV requests.
        allow_responses=True,
    )


def operator_permissions() -> UserPermissions:
    """The CLI and people: health and discovery requests, read-only JetStream monitoring and
    what external systems may publish. No stream administration and no bucket access: the
    services provision what they use."""
    pub, sub = _Rules(), _Rules()
    _catalog_rules(OPERATOR_USER, pub, sub)
    sub.add("its own inbox: replies, JetStream API answers and publish acks", inbox(OPERATOR_USER))
    pub.add("micro-service discovery requests (PING, INFO, STATS)", f"{MICRO_PREFIX}.>")
    pub.add(
        "read-only JetStream monitoring",
        f"{JS_API}.INFO",
        f"{JS_API}.STREAM.NAMES",
        f"{JS_API}.STREAM.LIST",
        f"{JS_API}.STREAM.INFO.*",
        f"{JS_API}.CONSUMER.NAMES.*",
        f"{JS_API}.CONSUMER.LIST.*",
        f"{JS_API}.CONSUMER.INFO.*.*",
    )
    return UserPermissions(
        user=OPERATOR_USER,
        description="operators and the agentbus CLI",
        publish=pub.freeze(),
        subscribe=sub.freeze(),
        allow_responses=False,
    )


def publisher_permissions(tenant_id: str) -> UserPermissions:
    """Other systems of one tenant (CI, git host, ticketing): that tenant's domain events and
    ingest jobs, nothing else. No bucket access: document bytes go through the gateway's
    upload (an API key names the tenant); an ingest job may point only at its tenant's objects."""
    user = publisher_user(tenant_id)
    pub, sub = _Rules(), _Rules()
    for spec in SUBJECTS:
        if EXTERNAL in spec.producers:
            scoped = s.TENANT_SCOPED[spec.subject](tenant_id)
            pub.add(f"produces {spec.subject} for tenant {tenant_id} only", scoped)
    sub.add("its own inbox: JetStream publish acks", inbox(user))
    return UserPermissions(
        user=user,
        description=f"outside systems of tenant {tenant_id}: its domain events and ingest jobs",
        publish=pub.freeze(),
        subscribe=sub.freeze(),
        allow_responses=False,
    )


def all_users(publisher_tenants: Sequence[str] = ()) -> tuple[UserPermissions, ...]:
    """Every user: the services, `operator`, and one publisher per tenant given."""
    users = (
        *(service_permissions(svc) for svc in SERVICES),
        operator_permissions(),
        *(publisher_permissions(t) for t in dict.fromkeys(publisher_tenants)),
    )
    seen: dict[str, str] = {}
    for perms in users:
        other = seen.setdefault(perms.password_env, perms.user)
        if other != perms.user:
            raise ValueError(f"users {other!r} and {perms.user!r} share {perms.password_env}")
    return users


def read_publishers(path: Path) -> tuple[str, ...]:
    """Tenant ids, one a line (`#` starts a comment), of the publishers to issue."""
    tenants = []
    for line in path.read_text().splitlines():
        tenant = line.split("#", 1)[0].strip()
        if tenant:
            tenants.append(s.token(tenant, "tenant id"))
    return tuple(tenants)


HEADER = """\
# NATS server configuration for Agentbus: JetStream, one user per service, `operator`, and one
# `publisher-<tenant>` per tenant listed in deploy/nats/publishers.txt.
#
# GENERATED by `python -m agentbus.contracts.permissions` from libs/contracts (catalog.py,
# streams.py). Do not edit: change the contracts and regenerate; a test fails when this file is
# stale. Each service may publish exactly the subjects it produces and subscribe exactly the ones
# it consumes (DESIGN.md section 3), plus the protocol subjects named next to each rule.
#
# Passwords are environment references resolved by nats-server at start-up; it refuses to start
# when one is missing. The value is parsed as a config token: use letters, digits, '-' and '_',
# or put a bcrypt hash (`nats server passwd`) in double quotes inside the variable, e.g.
#   NATS_GATEWAY_PASSWORD='"$2a$11$..."'
# Ports and the JetStream store directory come from the command line or an including file
# (`nats-server -c nats-auth.conf -js -sd /data/jetstream`).
"""


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _render_rules(rules: Iterable[Rule], indent: str) -> list[str]:
    lines: list[str] = []
    last_why = None
    for rule in rules:
        if rule.why != last_why:
            lines.append(f"{indent}# {rule.why}")
            last_why = rule.why
        lines.append(f"{indent}{_quote(rule.subject)}")
    return lines


def render_config(users: Sequence[UserPermissions] | None = None, *, jetstream: bool = True) -> str:
    """The server configuration: JetStream on (unless `jetstream=False`) and the users."""
    users = all_users() if users is None else users
    lines = [HEADER]
    if jetstream:
        lines += ["jetstream: enabled", ""]
    lines += ["authorization {", "  users = ["]
    for perms in users:
        lines += [
            "    {",
            f"      # {perms.description}",
            f"      user: {_quote(perms.user)}",
            f"      password: ${perms.password_env}",
            "      permissions: {",
            "        publish: {",
            "          allow: [",
            *_render_rules(perms.publish, "            "),
            "          ]",
            "        }",
            "        subscribe: {",
            "          allow: [",
            *_render_rules(perms.subscribe, "            "),
            "          ]",
            "        }",
        ]
        if perms.allow_responses:
            lines.append("        allow_responses: true")
        lines += ["      }", "    }"]
    lines += ["  ]", "}", ""]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m agentbus.contracts.permissions",
        description="Render the NATS server configuration (users and permissions) from the "
        "Agentbus contracts.",
    )
    parser.add_argument("--out", type=Path, help="write here instead of standard output")
    parser.add_argument(
        "--check", action="store_true", help="exit 1 if --out differs from what would be written"
    )
    parser.add_argument(
        "--publisher",
        action="append",
        default=[],
        metavar="TENANT",
        help="issue a publisher-<TENANT> user for that tenant's outside systems (repeatable)",
    )
    parser.add_argument(
        "--publishers",
        type=Path,
        metavar="FILE",
        help="tenants to issue publishers for, one a line (deploy/nats/publishers.txt)",
    )
    parser.add_argument(
        "--no-jetstream",
        action="store_true",
        help="leave out `jetstream: enabled`, e.g. to include the users into a config that "
        "already configures JetStream",
    )
    args = parser.parse_args(argv)
    try:
        tenants = [*(read_publishers(args.publishers) if args.publishers else ()), *args.publisher]
        users = all_users(publisher_tenants=[s.token(t, "tenant id") for t in tenants])
    except (OSError, ValueError) as exc:
        parser.error(str(exc))
    text = render_config(users, jetstream=not args.no_jetstream)
    if args.out is None:
        if args.check:
            parser.error("--check needs --out")
        sys.stdout.write(text)
        return 0
    current = args.out.read_text() if args.out.exists() else None
    if args.check:
        if current != text:
            print(f"{args.out} is stale: run {parser.prog} --out {args.out}", file=sys.stderr)
            return 1
        return 0
    if current != text:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
