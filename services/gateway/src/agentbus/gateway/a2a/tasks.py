"""A run read as an A2A task: its events folded into a TaskView (shared by the JSON-RPC routes
and the push notification pass, which has no request)."""

from __future__ import annotations

from typing import Any

from agentbus.contracts import RunEvent

from ..runs import RunGateway
from ..turns import last_event
from .wire import RUN_STATES, TaskView


def apply(task: TaskView, event: RunEvent) -> None:
    """Fold one run event into the task."""
    if event.type == "citations":
        for cite in event.data.get("citations") or []:
            if isinstance(cite, dict) and cite not in task.citations:
                task.citations.append(cite)
    elif event.type == "error":
        task.error = str(event.data.get("message", "the run failed"))
    elif event.type == "end":
        task.state = RUN_STATES.get(event.status or "success", "failed")
        task.answer = str(event.data.get("answer") or "")
        for cite in event.data.get("citations") or []:
            if isinstance(cite, dict) and cite not in task.citations:
                task.citations.append(cite)
        if task.state == "failed" and not task.error:
            task.error = f"the run ended {event.status}"
    elif task.state == "submitted":
        task.state = "working"


async def task_of_row(runs: RunGateway, tenant_id: str, row: dict[str, Any]) -> TaskView:
    """The task of a `runs` row: its state from the run's last event, else the row's status."""
    task_id, assistant_id = str(row["run_id"]), str(row["assistant_id"])
    task = TaskView(task_id, str(row["thread_id"]), assistant_id)
    last = await last_event(runs, task_id)
    if last is not None and last.tenant_id == tenant_id:
        apply(task, last)
    elif str(row.get("status")) in RUN_STATES:
        task.state = RUN_STATES[str(row["status"])]
    return task
