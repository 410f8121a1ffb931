"""Diagnostic assistants: built-in graphs for testing the platform, not for tenants.

`steps` sleeps for a caller-chosen delay per node: any tenant could hold run slots with it, so it
is served only with `AGENTBUS_DIAGNOSTIC_ASSISTANTS=true` (set by `agentbus up` and the tests).
"""

from __future__ import annotations

from . import graph_config

DIAGNOSTIC_GRAPHS = frozenset({"steps"})


def drop_diagnostics(config: graph_config.GraphConfig) -> None:
    """Remove the built-in diagnostic graphs; a user's graph of the same name stays."""
    builtin = graph_config.read(graph_config.BUILTIN_CONFIG).graphs
    for graph_id in DIAGNOSTIC_GRAPHS:
        spec = config.graphs.get(graph_id)
        if spec is not None and spec == builtin.get(graph_id):
            del config.graphs[graph_id]
