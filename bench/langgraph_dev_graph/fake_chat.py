"""The graph both servers of bench/langgraph_api_vs_dev.py run: one node calling LangChain's
fake chat model, which streams a fixed 20-word answer one word per chunk. It needs only
langgraph and langchain-core, so `langgraph dev` and Agentbus load this same file from the same
langgraph.json. The model is instant: what is measured is the server, not a model."""

from __future__ import annotations

import itertools
from typing import Any

from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage
from langgraph.graph import START, MessagesState, StateGraph

ANSWER = " ".join(f"word{i}" for i in range(20))


# A fresh model per call: GenericFakeChatModel pops answers from one shared iterator.
def _model() -> GenericFakeChatModel:
    return GenericFakeChatModel(messages=itertools.repeat(AIMessage(content=ANSWER)))


async def answer(state: MessagesState) -> dict[str, Any]:
    reply = await _model().ainvoke(state["messages"])
    return {"messages": [reply]}


graph = StateGraph(MessagesState).add_node("answer", answer).add_edge(START, "answer").compile()
