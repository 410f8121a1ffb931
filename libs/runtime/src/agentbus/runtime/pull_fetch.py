"""Pull fetches that time out the way FastStream expects, so no fetched message is dropped.

nats-py's `PullSubscription.fetch` (2.16) usually reports an empty wait as
`nats.errors.TimeoutError`, but in two places of a multi-message fetch it raises a bare
`asyncio.TimeoutError` instead: when the answer to its first probe arrives with the deadline
(almost) spent, it gives up before sending the lingering request. FastStream's batch pull loop
(0.7) keeps fetching until its window closes, collecting what each fetch returns, and catches only
`nats.errors.TimeoutError`. The bare one ends its consume task with the collected messages still
in hand: they are never handled nor acked, and JetStream delivers them again only after the
consumer's ack wait (30 s here). Seen as analytics rows arriving 30 s late, one fetch window in
twenty to forty under a trickle of messages; a fetch with a deadline under 2 ms raises the bare
error about one time in six (tests/test_pull_fetch.py).

`install()` wraps `fetch` once per process so every timeout is a `nats.errors.TimeoutError`;
`consuming.durable_subscriber`, the one way our services bind a pull consumer, calls it.
"""

from __future__ import annotations

import functools
from typing import Any

import nats.errors
from nats.js.client import JetStreamContext

_MARK = "_agentbus_timeouts_as_nats_errors"


def install() -> None:
    """Make `PullSubscription.fetch` raise only `nats.errors.TimeoutError` for a timeout."""
    pull = JetStreamContext.PullSubscription
    if getattr(pull.fetch, _MARK, False):
        return
    original = pull.fetch

    @functools.wraps(original)
    async def fetch(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return await original(self, *args, **kwargs)
        except nats.errors.TimeoutError:
            raise
        except TimeoutError as exc:
            raise nats.errors.TimeoutError from exc

    setattr(fetch, _MARK, True)
    pull.fetch = fetch  # type: ignore[method-assign]
