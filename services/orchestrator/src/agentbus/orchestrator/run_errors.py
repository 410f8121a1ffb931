"""What a failed run tells its caller: a reason code and a fixed sentence, never the exception.

An exception's text can carry SQL, file paths, URLs with credentials or another tenant's data
(issue 13, point 11). The runner logs it with the run's trace and run ids; the `error` event the
caller sees (LangGraph's `{"error", "message"}`, the AI SDK's errorText, OpenAI's error) says only
which kind of failure it was.
"""

from __future__ import annotations

from typing import Any

MESSAGES = {
    "graph_error": "The run failed while its graph was running",
    "graph_unavailable": "The run's graph could not be opened",
}


def run_failure(reason: str) -> dict[str, Any]:
    """The `error` event's data for a run that failed for `reason` (the exception is logged)."""
    return {"reason": reason, "message": MESSAGES.get(reason, "The run failed")}
