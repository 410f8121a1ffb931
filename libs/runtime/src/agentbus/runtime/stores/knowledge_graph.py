"""Bolt drivers for the knowledge graph (Neo4j in production, FalkorDB embedded), and the one
way we send it values: as Cypher literals in the statement, never as Bolt parameters.

Why every process gets its driver here: FalkorDB's Bolt listener, on a client's GOODBYE, closes
the socket but keeps its descriptor registered, so the next connection that reuses that number
is never served (seen with strace; it makes restarts and tests hang at random). So connections
to a FalkorDB server close without GOODBYE: a driver made with `falkordb=True` (services pass
`settings.graph_server == "falkordb"`, which `agentbus up` sets) marks its server's address,
and so does the embedded engine when it starts. FalkorDB calls itself "Neo4j/5.13.0" in its
HELLO answer, so the driver cannot tell by itself. Connections to any other server (a real
Neo4j) keep the driver's own close, GOODBYE included.

Why no Bolt parameters: FalkorDB 4.16 (and every release with Bolt; 4.20 dropped Bolt) turns a
RUN's parameters into a text prefix, ``CYPHER name=value ... <query>``, with sprintf into a
4096-byte stack buffer (``get_query`` in src/bolt/bolt_api.c), without escaping:

* more than ~4 KB of prefix plus query overflows the buffer and the server aborts with
  ``*** stack smashing detected ***`` (one 4.1 KB string does it; so did the entity list of a
  real manual page);
* a string holding ``'`` ends its literal early: the query fails, or the rest of the string is
  read as more parameters (``x' t='other`` replaces ``$t``: another tenant's rows);
* floats are printed with ``%f`` (six decimals: 1e-9 arrives as 0.0).

`inline_parameters` writes the same values as escaped literals into the statement itself, which
both servers parse the same way (the Cypher literal syntax), so there is one code path. The
price on Neo4j is a plan-cache entry per distinct statement; our writes are batched and few.
"""

from __future__ import annotations

import math
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

from neo4j import AsyncDriver, AsyncGraphDatabase, Driver, GraphDatabase

# (host, port) of the Bolt servers known to be FalkorDB, as a connection names its server.
_FALKORDB: set[tuple[str, int]] = set()
_patched = False


def _address(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return (parts.hostname or "localhost", parts.port or 7687)


def mark_falkordb(url: str) -> None:
    """Connections to the server at `url` close without GOODBYE from now on (this process)."""
    _FALKORDB.add(_address(url))
    _patch_close()


def closes_without_goodbye(connection: Any) -> bool:
    address = connection.unresolved_address
    return (str(address[0]), int(address[1])) in _FALKORDB


def _patch_close() -> None:
    global _patched
    if _patched:
        return
    from neo4j._async.io._bolt._base import AsyncBolt
    from neo4j._sync.io._bolt._base import Bolt

    async_close: Callable[[Any], Awaitable[None]] = AsyncBolt.close
    sync_close: Callable[[Any], None] = Bolt.close

    async def aclose(self: Any) -> None:
        if closes_without_goodbye(self):
            self.kill()
        else:
            await async_close(self)

    def close(self: Any) -> None:
        if closes_without_goodbye(self):
            self.kill()
        else:
            sync_close(self)

    AsyncBolt.close = aclose  # type: ignore[method-assign]
    Bolt.close = close  # type: ignore[method-assign]
    _patched = True


def _auth(user: str, password: str) -> tuple[str, str] | None:
    return (user, password) if user else None


def async_driver(
    url: str, user: str = "", password: str = "", *, falkordb: bool = False, **options: Any
) -> AsyncDriver:
    if falkordb:
        mark_falkordb(url)
    return AsyncGraphDatabase.driver(url, auth=_auth(user, password), **options)


def sync_driver(
    url: str, user: str = "", password: str = "", *, falkordb: bool = False, **options: Any
) -> Driver:
    if falkordb:
        mark_falkordb(url)
    return GraphDatabase.driver(url, auth=_auth(user, password), **options)


# --- values as Cypher literals ----------------------------------------------------------------

# Both servers decode these escapes; every other character goes in as it is (UTF-8), since
# FalkorDB keeps \uXXXX as six characters where Neo4j decodes it.
_STRING_ESCAPES = str.maketrans({"\\": "\\\\", "'": "\\'", "\n": "\\n", "\r": "\\r", "\t": "\\t"})
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_INT64 = (-(2**63), 2**63 - 1)
# A parameter reference outside quoted text: strings and `escaped names` are matched first and
# kept as they are, so "$x" inside a literal is never replaced.
_PARAMETER = re.compile(
    r"""'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"|`[^`]*`|\$([A-Za-z_][A-Za-z0-9_]*)""", re.DOTALL
)


def _key(name: str) -> str:
    if not isinstance(name, str):
        raise TypeError(f"graph: map keys must be strings, not {type(name).__name__}")
    if _IDENTIFIER.fullmatch(name):
        return name
    if "`" in name or "\x00" in name:
        # Neo4j escapes a backtick by doubling it; FalkorDB's parser rejects that.
        raise ValueError(f"graph: map key {name!r} cannot be written for both servers")
    return f"`{name}`"


def cypher_literal(value: Any) -> str:
    """`value` as a Cypher literal that Neo4j and FalkorDB read back as the same value.

    Supports None, bool, int (64-bit), finite float, str, lists/tuples and string-keyed maps of
    those (keys without backticks). NUL cannot be stored by FalkorDB (it ends the query text):
    it becomes U+FFFD, as an undecodable byte would. NaN and infinities have no literal:
    ValueError.
    """
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        if not _INT64[0] <= value <= _INT64[1]:
            raise ValueError(f"graph: integer {value} does not fit in 64 bits")
        # -2**63 written plainly would be the negation of an out-of-range literal.
        return f"({value + 1} - 1)" if value == _INT64[0] else str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"graph: {value} has no Cypher literal")
        text = repr(value)
        if "e" in text:  # 1e-09 -> 1e-9, 1e+16 -> 1e16: the exponent form openCypher defines
            mantissa, exponent = text.split("e")
            text = f"{mantissa}e{int(exponent)}"
        return text
    if isinstance(value, str):
        return "'" + value.replace("\x00", "\ufffd").translate(_STRING_ESCAPES) + "'"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{_key(k)}: {cypher_literal(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(cypher_literal(v) for v in value) + "]"
    raise TypeError(f"graph: no Cypher literal for a {type(value).__name__}")


def inline_parameters(query: str, params: Mapping[str, Any]) -> str:
    """`query` with each `$name` outside quotes replaced by the literal of `params[name]`.

    Send the result with no parameters (see the module docstring). A `$name` without a value
    is a KeyError; values the query does not use are ignored.
    """
    literals: dict[str, str] = {}

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name is None:
            return match.group(0)
        if name not in params:
            raise KeyError(f"graph: the query uses ${name} but no value was given")
        if name not in literals:
            literals[name] = cypher_literal(params[name])
        return literals[name]

    return _PARAMETER.sub(replace, query)
