"""How every request/reply handler answers: a typed request in, its contract's reply out.

A handler written with `replier` takes the request already parsed into its contract model and
returns the reply model. The wrapper around it does what every handler did by hand before:
- an unreadable request is rejected (logged, counted) and answered with an `ErrorReply`;
- log lines inside the handler carry the request's tenant;
- a failure of the work is logged with its traceback and answered with a fixed sentence (in an
  `ErrorReply`, or the reply contract's own error field where it has one), so a requester never
  waits out its timeout for nothing and never sees a driver's words.

Failures the contract answers in its own words (bad parameters of a named query, say) are caught
by the handler itself; what reaches the wrapper is what the handler did not expect.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from faststream.nats import NatsBroker
from faststream.nats.annotations import NatsMessage
from pydantic import BaseModel

from agentbus.contracts import ErrorReply

from .consuming import Rejects, parse_or_error
from .logs import log_context

log = logging.getLogger("agentbus.replies")

Req = TypeVar("Req", bound=BaseModel)
# What a handler's failure is answered with: (the request, the exception) -> a reply.
OnError = Callable[[Any, Exception], BaseModel]
Handler = Callable[[Req], Awaitable[BaseModel]]


def error_reply(reason: str, sentence: str) -> OnError:
    """Answer a failure with an `ErrorReply`: `reason` and a fixed `sentence`. The exception's
    own text (driver messages, addresses, SQL) stays in the log the wrapper writes: requesters
    pass replies on to tenants (issue 13, point 11)."""

    def answer(_request: Any, _exc: Exception) -> ErrorReply:
        return ErrorReply(error=sentence, reason=reason)

    return answer


def replier(
    broker: NatsBroker,
    rejects: Rejects,
    subject: str,
    request: type[Req],
    *,
    queue: str,
    title: str,
    description: str,
    on_error: OnError,
) -> Callable[[Handler[Req]], Handler[Req]]:
    """Register the decorated `async def handler(req) -> Reply` on `subject` (queue group
    `queue`), wrapped as described in this module's docstring. Returns the handler unchanged,
    so it can still be called directly."""

    def register(handler: Handler[Req]) -> Handler[Req]:
        async def answer(msg: NatsMessage) -> Any:
            req = parse_or_error(msg.body, request, rejects, msg.raw_message.subject)
            if isinstance(req, ErrorReply):
                return req
            with log_context(tenant_id=getattr(req, "tenant_id", None)):
                try:
                    return await handler(req)
                except Exception as exc:
                    log.warning("%s failed", title, exc_info=True)
                    return on_error(req, exc)

        # FastStream reads the wrapper's own signature (one message parameter): no functools.wraps,
        # whose __wrapped__ would show it the handler's.
        answer.__name__ = answer.__qualname__ = handler.__name__
        answer.__doc__ = handler.__doc__
        broker.subscriber(subject, queue=queue, title=title, description=description)(answer)
        return handler

    return register
