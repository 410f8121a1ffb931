"""The graphs this orchestrator hosts, imported from the graph config as LangGraph's server
does: a compiled graph, an uncompiled `StateGraph` (compiled here), or a factory (sync or async,
with no parameter or the run's config; it may return a graph, an awaitable or a context
manager of one) called for each run.

Every graph runs with the platform's PostgreSQL checkpointer and the tenant's view of the
PostgreSQL store, whatever it was compiled with: a graph that brings its own checkpointer gets
a warning, since its threads would otherwise not survive a restart or move between replicas.
A graph that fails to import stops start-up with the file, the line and the error.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import inspect
import logging
import re
import sys
import traceback
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import StateGraph
from langgraph.pregel import Pregel
from langgraph.store.base import BaseStore

from .context import RunContext
from .graph_config import GraphConfig, GraphSpec
from .tenant_store import TenantStore

AnyGraph = Pregel[Any, Any, Any, Any]

log = logging.getLogger("agentbus.orchestrator.graphs")


class GraphLoadError(RuntimeError):
    """A graph of the config cannot be served; the message says where and why."""


def _where(exc: BaseException, spec: GraphSpec) -> str:
    """`file, line N` of the error: in the graph's own file when the error passed through it."""
    if isinstance(exc, SyntaxError) and exc.filename:
        return f"{exc.filename}, line {exc.lineno}"
    tb = traceback.extract_tb(exc.__traceback__)
    frames = [f for f in tb if "importlib" not in f.filename] or list(tb)
    own = [f for f in frames if spec.path is not None and Path(f.filename) == spec.path]
    frame = (own or frames)[-1] if (own or frames) else None
    if frame is None:
        return spec.where
    return f"{frame.filename}, line {frame.lineno}"


def _import(spec: GraphSpec) -> Any:
    try:
        if spec.module is not None:
            module = importlib.import_module(spec.module)
        else:
            assert spec.path is not None
            name = "agentbus_graphs." + re.sub(r"\W", "_", spec.graph_id)
            module_spec = importlib.util.spec_from_file_location(name, spec.path)
            if module_spec is None or module_spec.loader is None:
                raise GraphLoadError(f"graph {spec.graph_id!r}: cannot load {spec.path}")
            module = importlib.util.module_from_spec(module_spec)
            sys.modules[name] = module
            module_spec.loader.exec_module(module)
    except GraphLoadError:
        raise
    except (Exception, SystemExit) as exc:
        raise GraphLoadError(
            f"graph {spec.graph_id!r}: importing {spec.where} failed at {_where(exc, spec)}: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    try:
        return getattr(module, spec.variable)
    except AttributeError:
        raise GraphLoadError(
            f"graph {spec.graph_id!r}: {spec.where} has no variable {spec.variable!r}"
        ) from None


def _takes_config(factory: Any) -> bool:
    try:
        params = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return False
    positional = [
        p
        for p in params
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
    ]
    return len(positional) > 0


def owns_checkpointer(graph: AnyGraph) -> bool:
    return isinstance(graph.checkpointer, BaseCheckpointSaver)


def is_native(graph: AnyGraph) -> bool:
    """A built-in graph: its nodes take the platform's RunContext and emit their own events."""
    builder = getattr(graph, "builder", None)
    return getattr(builder, "context_schema", None) is RunContext


@dataclass
class HostedGraph:
    spec: GraphSpec
    # A compiled graph (no factory), or the factory itself.
    compiled: AnyGraph | None = None
    factory: Any = None
    takes_config: bool = False
    warned: set[str] = field(default_factory=set)

    @property
    def graph_id(self) -> str:
        return self.spec.graph_id

    @property
    def description(self) -> str | None:
        return self.spec.description

    @property
    def name(self) -> str | None:
        """The compiled graph's own name (LangGraph's default "LangGraph" is no name)."""
        name = self.compiled.name if self.compiled is not None else None
        return None if name in (None, "LangGraph") else name


class Graphs:
    """graph_id -> HostedGraph, and the per-run graph with our checkpointer and store."""

    def __init__(
        self,
        hosted: dict[str, HostedGraph],
        checkpointer: BaseCheckpointSaver[Any] | None,
        store: BaseStore | None,
    ) -> None:
        self.hosted = hosted
        self.checkpointer = checkpointer
        self.store = store

    def __contains__(self, graph_id: object) -> bool:
        return graph_id in self.hosted

    def ids(self) -> list[str]:
        return list(self.hosted)

    def _warn_once(self, hosted: HostedGraph, graph: AnyGraph) -> None:
        if owns_checkpointer(graph) and "checkpointer" not in hosted.warned:
            hosted.warned.add("checkpointer")
            log.warning(
                "graph %r brings its own checkpointer (%s); Agentbus runs it with the PostgreSQL "
                "checkpointer instead, so its threads survive restarts and any replica can "
                "continue them. Compile it without a checkpointer to silence this.",
                hosted.graph_id,
                type(graph.checkpointer).__name__,
            )

    def _bind(self, hosted: HostedGraph, graph: Any, tenant_id: str) -> AnyGraph:
        if isinstance(graph, StateGraph):
            graph = graph.compile()
        if not isinstance(graph, Pregel):
            raise GraphLoadError(
                f"graph {hosted.graph_id!r}: its factory returned a {type(graph).__name__}, "
                "not a graph"
            )
        self._warn_once(hosted, graph)
        update: dict[str, Any] = {
            "checkpointer": self.checkpointer,
            "store": TenantStore(self.store, tenant_id) if self.store is not None else None,
        }
        if graph.name == "LangGraph":
            update["name"] = hosted.graph_id
        return graph.copy(update=update)

    @contextlib.asynccontextmanager
    async def open(
        self, graph_id: str, config: dict[str, Any], tenant_id: str
    ) -> AsyncIterator[AnyGraph]:
        """The graph for one run (a factory is called with the run's config)."""
        hosted = self.hosted[graph_id]
        if hosted.compiled is not None:
            yield self._bind(hosted, hosted.compiled, tenant_id)
            return
        made = hosted.factory(config) if hosted.takes_config else hosted.factory()
        if inspect.isawaitable(made):
            made = await made
        if hasattr(made, "__aenter__"):
            async with made as graph:
                yield self._bind(hosted, graph, tenant_id)
        elif hasattr(made, "__enter__") and not isinstance(made, Pregel):
            with made as graph:
                yield self._bind(hosted, graph, tenant_id)
        else:
            yield self._bind(hosted, made, tenant_id)


def host(spec: GraphSpec) -> HostedGraph:
    value = _import(spec)
    if isinstance(value, StateGraph):
        try:
            value = value.compile()
        except Exception as exc:
            raise GraphLoadError(
                f"graph {spec.graph_id!r}: {spec.where}:{spec.variable} does not compile: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
    if isinstance(value, Pregel):
        return HostedGraph(spec, compiled=value)
    if callable(value):
        return HostedGraph(spec, factory=value, takes_config=_takes_config(value))
    raise GraphLoadError(
        f"graph {spec.graph_id!r}: {spec.where}:{spec.variable} is a {type(value).__name__}, "
        "not a compiled graph, a StateGraph or a factory"
    )


def load(
    config: GraphConfig,
    checkpointer: BaseCheckpointSaver[Any] | None,
    store: BaseStore | None,
) -> Graphs:
    hosted = {graph_id: host(spec) for graph_id, spec in config.graphs.items()}
    graphs = Graphs(hosted, checkpointer, store)
    for h in hosted.values():
        if h.compiled is not None:
            graphs._warn_once(h, h.compiled)
    return graphs
