"""The graph the Agent Chat UI check talks to: a `messages` state, a streaming chat model and,
when asked to save a note, a human-in-the-loop interrupt in the shape Agent Chat UI renders as an
approve/reject form (`action_requests` + `review_configs`, as LangChain's HITL middleware)."""

from __future__ import annotations

from typing import Annotated, Any

from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, AnyMessage
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.types import interrupt
from typing_extensions import TypedDict


class ChatState(TypedDict, total=False):
    messages: Annotated[list[AnyMessage], add_messages]
    replies: int


def _last_text(state: ChatState) -> str:
    """The text of the user's last message."""
    human = [m for m in state["messages"] if m.type == "human"]
    content = human[-1].content if human else ""
    if isinstance(content, list):  # the UI sends content blocks
        return " ".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return str(content)


async def reply(state: ChatState) -> dict[str, Any]:
    count = state.get("replies", 0) + 1
    answer = f"Reply #{count}: you said {_last_text(state)!r}."
    model = GenericFakeChatModel(messages=iter([AIMessage(content=answer)]))
    return {"messages": [await model.ainvoke(state["messages"])], "replies": count}


def review(state: ChatState) -> dict[str, Any]:
    note = _last_text(state)
    answer = interrupt(
        {
            "action_requests": [
                {"name": "save_note", "args": {"text": note}, "description": "Save this note?"}
            ],
            "review_configs": [
                {"action_name": "save_note", "allowed_decisions": ["approve", "reject"]}
            ],
        }
    )
    decisions = answer.get("decisions", []) if isinstance(answer, dict) else []
    kind = decisions[0].get("type") if decisions else None
    text = "Note saved." if kind == "approve" else f"Note not saved ({kind})."
    return {"messages": [AIMessage(content=text)]}


def after_reply(state: ChatState) -> str:
    return "review" if "save" in _last_text(state).lower() else END


builder = StateGraph(ChatState)
builder.add_node("reply", reply)
builder.add_node("review", review)
builder.add_edge(START, "reply")
builder.add_conditional_edges("reply", after_reply, ["review", END])
builder.add_edge("review", END)
graph = builder.compile()
