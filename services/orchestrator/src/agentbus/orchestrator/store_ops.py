"""`agentbus.v1.store.ops`: the gateway's `/store` API on the store graphs receive, seen
through the request's tenant (TenantStore), so the API and `runtime.store` share items."""

from __future__ import annotations

from typing import Any

from langgraph.store.base import BaseStore, Item

from agentbus.contracts import ErrorReply, StoreReply, StoreRequest
from agentbus.runtime.llm.embeddings import embed

from .hosted_run import to_json
from .settings import OrchestratorSettings
from .tenant_store import TenantStore

# The store raises these for what the request asked (a label with a period, a filter operator
# it does not know): their text is for the caller. Anything else is the store's own failure
# (the database, a driver): logged by the replier, answered with a fixed sentence.
REQUEST_ERRORS = (ValueError, TypeError, KeyError)


def store_failure(_request: Any, exc: Exception) -> ErrorReply:
    """The answer to a store operation that raised `exc`."""
    if isinstance(exc, REQUEST_ERRORS):
        return ErrorReply(error=str(exc)[:500] or type(exc).__name__, reason="store_error")
    return ErrorReply(error="The store failed this operation", reason="store_unavailable")


def embed_model(router: Any) -> str:
    """The first deployment of the `embed` model group (LiteLLM Router config)."""
    for entry in router.model_list:
        if entry.get("model_name") == "embed":
            return str(entry["litellm_params"]["model"])
    raise ValueError("no `embed` model group in the model config")


def store_index(settings: OrchestratorSettings, router: Any) -> dict[str, Any] | None:
    """LangGraph's store index over the `embed` model group, when fields are configured."""
    if settings.store_index_fields is None:
        return None
    model, dims = embed_model(router), settings.store_index_dims

    async def aembed(texts: list[str]) -> list[list[float]]:
        return (await embed(texts, model, dimensions=dims)).vectors

    return {"dims": dims, "embed": aembed, "fields": settings.store_index_fields}


def _item(item: Item) -> dict[str, Any]:
    result: dict[str, Any] = to_json(item.dict())
    return result


async def store_op(req: StoreRequest, store: BaseStore) -> StoreReply | ErrorReply:
    tenant = TenantStore(store, req.tenant_id)
    namespace = tuple(req.namespace)
    if req.ttl is not None and not store.supports_ttl:
        return ErrorReply(error="ttl is not supported by this store", reason="unsupported")
    if req.op in ("put", "get", "delete") and (not namespace or req.key is None):
        return ErrorReply(error=f"{req.op} needs a namespace and a key", reason="schema")
    item: dict[str, Any] | None = None
    items: list[dict[str, Any]] = []
    namespaces: list[list[str]] = []
    if req.op == "put":
        if req.value is None:
            return ErrorReply(error="put needs a value", reason="schema")
        assert req.key is not None
        await tenant.aput(namespace, req.key, req.value, index=req.index, ttl=req.ttl)
    elif req.op == "get":
        assert req.key is not None
        found = await tenant.aget(namespace, req.key, refresh_ttl=req.refresh_ttl)
        item = _item(found) if found is not None else None
    elif req.op == "delete":
        assert req.key is not None
        await tenant.adelete(namespace, req.key)
    elif req.op == "search":
        if req.query and getattr(store, "index_config", None) is None:
            return ErrorReply(
                error="semantic search needs a store index (AGENTBUS_STORE_INDEX_FIELDS)",
                reason="unsupported",
            )
        found_items = await tenant.asearch(
            namespace,
            query=req.query,
            filter=req.filter,
            limit=req.limit,
            offset=req.offset,
            refresh_ttl=req.refresh_ttl,
        )
        items = [_item(i) for i in found_items]
    else:
        names = await tenant.alist_namespaces(
            prefix=tuple(req.prefix) if req.prefix else None,
            suffix=tuple(req.suffix) if req.suffix else None,
            max_depth=req.max_depth,
            limit=req.limit,
            offset=req.offset,
        )
        namespaces = [list(n) for n in names]
    return StoreReply(tenant_id=req.tenant_id, item=item, items=items, namespaces=namespaces)
