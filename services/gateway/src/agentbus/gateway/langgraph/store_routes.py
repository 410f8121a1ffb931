"""`/store` of the LangGraph API: the tenant's LangGraph store (PostgreSQL), the same one
graphs receive as `runtime.store`, reached over `agentbus.v1.store.ops`. Namespace labels are
non-empty and without periods (GET joins them with '.'), as LangGraph's server requires."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import HTTPException, Query, Response
from pydantic import Field, field_validator

from agentbus.contracts import STORE_OPS, StoreReply, StoreRequest

from ..auth.deps import Principal
from ..upstream import request_reply
from .models import Body
from .routes import Auth, Svc, router
from .runs import LangGraphRuns

Labels = list[str]
StoreOp = Literal["put", "get", "delete", "search", "namespaces"]


def _labels(value: Labels | None, *, allow_empty: bool = True) -> Labels | None:
    if value is None:
        return None
    if not value and not allow_empty:
        raise ValueError("namespace must have at least one label")
    for label in value:
        if not label or "." in label:
            raise ValueError(f"namespace label {label!r} must be non-empty, without periods")
    return value


class DeleteItem(Body):
    namespace: Labels = Field(min_length=1, max_length=32)
    key: str = Field(min_length=1, max_length=1024)

    @field_validator("namespace")
    @classmethod
    def _ns(cls, value: Labels) -> Labels:
        return _labels(value, allow_empty=False) or []


class PutItem(DeleteItem):
    value: dict[str, Any]
    index: Literal[False] | list[str] | None = None
    ttl: float | None = Field(default=None, gt=0)


class SearchItems(Body):
    namespace_prefix: Labels = Field(default_factory=list, max_length=32)
    filter: dict[str, Any] | None = None
    limit: int = Field(default=10, ge=1, le=1000)
    offset: int = Field(default=0, ge=0)
    query: str | None = Field(default=None, max_length=10_000)
    refresh_ttl: bool | None = None

    @field_validator("namespace_prefix")
    @classmethod
    def _ns(cls, value: Labels) -> Labels:
        return _labels(value) or []


class ListNamespaces(Body):
    prefix: Labels | None = None
    suffix: Labels | None = None
    max_depth: int | None = Field(default=None, ge=1)
    limit: int = Field(default=100, ge=1, le=1000)
    offset: int = Field(default=0, ge=0)

    @field_validator("prefix", "suffix")
    @classmethod
    def _ns(cls, value: Labels | None) -> Labels | None:
        return _labels(value)


async def _op(svc: LangGraphRuns, principal: Principal, op: StoreOp, **fields: Any) -> StoreReply:
    """One store operation for the caller's tenant; the body's fields are the request's."""
    req = StoreRequest(tenant_id=principal.tenant_id, op=op, **fields)
    return await request_reply(
        svc.gateway.nc,
        STORE_OPS,
        req,
        StoreReply,
        "Store operation",
        timeout=10,
        refusals={"unsupported": 422, "schema": 422, "store_error": 422},
    )


@router.put("/store/items", status_code=204, summary="Store or replace an item")
async def put_item(body: PutItem, principal: Auth, svc: Svc) -> Response:
    await _op(svc, principal, "put", **body.model_dump())
    return Response(status_code=204)


@router.get("/store/items", summary="One item, or null")
async def get_item(
    principal: Auth,
    svc: Svc,
    key: Annotated[str, Query(min_length=1, max_length=1024)],
    namespace: str = "",
    refresh_ttl: bool | None = None,
) -> dict[str, Any] | None:
    labels = namespace.split(".")
    if not all(labels):
        raise HTTPException(422, "namespace must be non-empty labels joined by '.'")
    reply = await _op(svc, principal, "get", namespace=labels, key=key, refresh_ttl=refresh_ttl)
    return reply.item


@router.delete("/store/items", status_code=204, summary="Delete an item")
async def delete_item(body: DeleteItem, principal: Auth, svc: Svc) -> Response:
    await _op(svc, principal, "delete", **body.model_dump())
    return Response(status_code=204)


@router.post("/store/items/search", summary="Items under a namespace prefix")
async def search_items(body: SearchItems, principal: Auth, svc: Svc) -> dict[str, Any]:
    fields = body.model_dump(exclude={"namespace_prefix"})
    reply = await _op(svc, principal, "search", namespace=body.namespace_prefix, **fields)
    return {"items": reply.items}


@router.post("/store/namespaces", summary="The namespaces in use")
async def list_namespaces(body: ListNamespaces, principal: Auth, svc: Svc) -> dict[str, Any]:
    reply = await _op(svc, principal, "namespaces", **body.model_dump())
    return {"namespaces": reply.namespaces}
