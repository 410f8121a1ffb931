"""A graph with a subgraph as one of its nodes (stream_subgraphs, /subgraphs)."""

from __future__ import annotations

from typing import Any

from langgraph.graph import END, START, StateGraph
from typing_extensions import TypedDict


class Inner(TypedDict, total=False):
    text: str
    steps: list[str]


def shout(state: Inner) -> dict[str, Any]:
    return {"text": state["text"].upper(), "steps": [*state.get("steps", []), "shout"]}


def mark(state: Inner) -> dict[str, Any]:
    return {"text": state["text"] + "!", "steps": [*state.get("steps", []), "mark"]}


inner_builder = StateGraph(Inner)
inner_builder.add_node("shout", shout)
inner_builder.add_node("mark", mark)
inner_builder.add_edge(START, "shout")
inner_builder.add_edge("shout", "mark")
inner_builder.add_edge("mark", END)
inner = inner_builder.compile()

outer_builder = StateGraph(Inner)
outer_builder.add_node("inner", inner)
outer_builder.add_edge(START, "inner")
outer_builder.add_edge("inner", END)
graph = outer_builder.compile()
