"""A user's graph as it would run under `langgraph dev`: only langgraph and langchain-core.

Its own state schema, a chat model that streams (langchain-core's fake model), the store the
server injects (`runtime.store`), a custom stream part, an `interrupt()` and two factories.
"""

from __future__ import annotations

import hashlib
import os
from typing import Annotated, Any

from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, AnyMessage
from langchain_core.runnables import RunnableConfig
from langgraph.config import get_stream_writer
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.runtime import Runtime
from langgraph.types import interrupt
from typing_extensions import TypedDict

# From the config's `env`: set before this module is imported.
GREETING = os.environ["NOTES_GREETING"]


class NotesState(TypedDict, total=False):
    messages: Annotated[list[AnyMessage], add_messages]
    notes: int
    approved: str


def _text(state: NotesState) -> str:
    last = state["messages"][-1]
    return str(last.content)


async def remember(state: NotesState, runtime: Runtime[Any]) -> dict[str, Any]:
    assert runtime.store is not None, "the server injects a store"
    text = _text(state)
    key = hashlib.sha256(text.encode()).hexdigest()[:16]
    await runtime.store.aput(("notes",), key, {"text": text})
    notes = await runtime.store.asearch(("notes",), limit=100)
    return {"notes": len(notes)}


async def reply(state: NotesState, config: RunnableConfig, runtime: Runtime[Any]) -> dict[str, Any]:
    get_stream_writer()({"progress": "replying"})
    answer = f"{GREETING} {_text(state)} ({state.get('notes', 0)} notes)"
    # What an assistant (or the run) configures reaches the graph: its context and config.
    context = runtime.context if isinstance(runtime.context, dict) else {}
    if context.get("signature"):
        answer += f" -- {context['signature']}"
    mood = config.get("configurable", {}).get("mood")
    if mood:
        answer += f" [{mood}]"
    model = GenericFakeChatModel(messages=iter([AIMessage(content=answer)]))
    return {"messages": [await model.ainvoke(state["messages"])]}


def review(state: NotesState) -> dict[str, Any]:
    decision = interrupt({"question": "Approve this note?"})
    return {"approved": str(decision), "messages": [AIMessage(content=f"approved: {decision}")]}


def after_reply(state: NotesState) -> str:
    return "review" if "approve" in _text(state).lower() else END


builder = StateGraph(NotesState)
builder.add_node("remember", remember)
builder.add_node("reply", reply)
builder.add_node("review", review)
builder.add_edge(START, "remember")
builder.add_edge("remember", "reply")
builder.add_conditional_edges("reply", after_reply, ["review", END])
builder.add_edge("review", END)

graph = builder.compile()


def make_graph(config: dict[str, Any]) -> Any:
    """A factory taking the run's config, as LangGraph's server calls it."""
    assert config["configurable"]["thread_id"]
    if config["configurable"].get("refuse"):
        # A factory failing with words that must stay in the orchestrator's log.
        raise RuntimeError("cannot reach the secret store at 10.0.0.7:8200")
    return builder.compile()


async def make_graph_async() -> StateGraph[Any, Any, Any, Any]:
    """An async factory with no parameter, returning an uncompiled graph."""
    return builder
