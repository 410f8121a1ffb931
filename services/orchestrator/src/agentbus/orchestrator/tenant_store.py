"""The `BaseStore` a graph receives (`runtime.store`): one shared PostgreSQL store, seen
through the run's tenant. Every namespace is stored under `(tenant_id, *namespace)` and read
back without it, so a graph cannot name, search or list another tenant's items."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from langgraph.store.base import (
    BaseStore,
    GetOp,
    Item,
    ListNamespacesOp,
    MatchCondition,
    Op,
    PutOp,
    Result,
    SearchItem,
    SearchOp,
)


class TenantStore(BaseStore):
    def __init__(self, store: BaseStore, tenant_id: str) -> None:
        self.store = store
        self.tenant_id = tenant_id
        self.supports_ttl = store.supports_ttl

    def _ns(self, namespace: tuple[str, ...]) -> tuple[str, ...]:
        return (self.tenant_id, *namespace)

    def _op(self, op: Op) -> Op:
        if isinstance(op, GetOp):
            return op._replace(namespace=self._ns(op.namespace))
        if isinstance(op, PutOp):
            return op._replace(namespace=self._ns(op.namespace))
        if isinstance(op, SearchOp):
            return op._replace(namespace_prefix=self._ns(op.namespace_prefix))
        if isinstance(op, ListNamespacesOp):
            conditions = list(op.match_conditions or ())
            prefixed = [
                MatchCondition("prefix", self._ns(tuple(c.path))) if c.match_type == "prefix" else c
                for c in conditions
            ]
            if not any(c.match_type == "prefix" for c in conditions):
                prefixed.insert(0, MatchCondition("prefix", (self.tenant_id,)))
            depth = op.max_depth + 1 if op.max_depth is not None else None
            return op._replace(match_conditions=tuple(prefixed), max_depth=depth)
        raise TypeError(f"unknown store operation {type(op).__name__}")

    def _result(self, result: Result) -> Result:
        if isinstance(result, SearchItem):
            return SearchItem(
                namespace=result.namespace[1:],
                key=result.key,
                value=result.value,
                created_at=result.created_at,
                updated_at=result.updated_at,
                score=result.score,
            )
        if isinstance(result, Item):
            return Item(
                namespace=result.namespace[1:],
                key=result.key,
                value=result.value,
                created_at=result.created_at,
                updated_at=result.updated_at,
            )
        if isinstance(result, list):
            return [r[1:] if isinstance(r, tuple) else self._result(r) for r in result]  # type: ignore[return-value]
        return result

    def _check(self, ops: Iterable[Op]) -> list[Op]:
        ops = list(ops)
        for op in ops:
            if isinstance(op, SearchOp | ListNamespacesOp | PutOp | GetOp):
                continue
            raise TypeError(f"unknown store operation {type(op).__name__}")
        return ops

    def batch(self, ops: Iterable[Op]) -> list[Result]:
        results = self.store.batch([self._op(op) for op in self._check(ops)])
        return [self._result(r) for r in results]

    async def abatch(self, ops: Iterable[Op]) -> list[Result]:
        results = await self.store.abatch([self._op(op) for op in self._check(ops)])
        return [self._result(r) for r in results]

    def __repr__(self) -> str:  # pragma: no cover - debugging aid
        return f"TenantStore({self.tenant_id!r}, {self.store!r})"

    def __getattr__(self, name: str) -> Any:
        # Anything else (index config, ttl settings) is the shared store's.
        return getattr(self.store, name)
