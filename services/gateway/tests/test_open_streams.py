"""The per-tenant cap of open streams, as pure logic (a fake clock): a place reserved before the
response starts counts until its stream claims it, so requests at the same instant at the cap
cannot all pass; an unclaimed reservation lapses."""

from __future__ import annotations

import pytest

from agentbus.gateway.limits import OpenStreams, TooManyStreams


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_two_reservations_at_the_cap_cannot_both_pass() -> None:
    streams = OpenStreams(per_tenant=2, clock=Clock())
    streams.claim("t")
    streams.reserve("t")  # the last place, held before its response starts
    with pytest.raises(TooManyStreams):
        streams.reserve("t")  # at the same instant, before the first one's stream starts
    streams.claim("t")  # the reserved stream starts: no second place taken
    assert streams.open["t"] == 2
    with pytest.raises(TooManyStreams):
        streams.claim("t")
    streams.release("t")
    streams.reserve("t")  # a released place can be held again


def test_an_unclaimed_reservation_lapses() -> None:
    clock = Clock()
    streams = OpenStreams(per_tenant=1, hold_s=10, clock=clock)
    streams.reserve("t")  # e.g. the route then answered 404: no stream ever claims it
    with pytest.raises(TooManyStreams):
        streams.reserve("t")
    clock.now = 10.0
    streams.reserve("t")
    assert streams.open["t"] == 0


def test_a_refused_request_gives_its_reservation_back() -> None:
    streams = OpenStreams(per_tenant=1, clock=Clock())
    streams.reserve("t")
    streams.unreserve("t")  # the route answered 404
    streams.reserve("t")
    streams.unreserve("t")
    streams.unreserve("t")  # nothing held: nothing to give back
    assert not streams.reserved


def test_tenants_do_not_share_places() -> None:
    streams = OpenStreams(per_tenant=1, clock=Clock())
    streams.reserve("a")
    streams.reserve("b")
    streams.claim("a")
    streams.claim("b")
    with pytest.raises(TooManyStreams):
        streams.claim("a")
    streams.release("a")
    streams.release("b")
    assert not streams.open and not streams.reserved
