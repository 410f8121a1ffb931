"""The LangGraph store over the bus (request/reply): the gateway's `/store` API reaches the
same PostgreSQL store graphs receive as `runtime.store`, through the orchestrator, and always
within the request's tenant."""

from __future__ import annotations

from typing import Any, Final, Literal

from pydantic import Field

from .base import JsonObject, TenantContract
from .subjects import PREFIX

STORE_OPS: Final = f"{PREFIX}.store.ops"

Label = str
Namespace = list[Label]


class StoreRequest(TenantContract):
    """`put`/`get`/`delete` an item (`namespace`, `key`); `search` under `namespace` (a prefix)
    with `filter` and, when the store has an index, a natural-language `query`; `namespaces`
    with `prefix`, `suffix`, `max_depth`."""

    op: Literal["put", "get", "delete", "search", "namespaces"]
    namespace: Namespace = Field(default_factory=list, max_length=32)
    key: str | None = Field(default=None, min_length=1, max_length=1024)
    value: dict[str, Any] | None = None
    index: Literal[False] | list[str] | None = None
    ttl: float | None = Field(default=None, gt=0)
    filter: dict[str, Any] | None = None
    query: str | None = Field(default=None, max_length=10_000)
    limit: int = Field(default=10, ge=1, le=1000)
    offset: int = Field(default=0, ge=0)
    refresh_ttl: bool | None = None
    prefix: Namespace | None = None
    suffix: Namespace | None = None
    max_depth: int | None = Field(default=None, ge=1)


class StoreReply(TenantContract):
    item: JsonObject | None = None
    items: list[JsonObject] = Field(default_factory=list)
    namespaces: list[Namespace] = Field(default_factory=list)
