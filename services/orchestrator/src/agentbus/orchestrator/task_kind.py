"""Task-aware model selection: a cheap classification of the question picks the model group.

No model call: cue words and phrases, checked in order (planning, analysis, summary), decide
the kind of task; a question with none of them is a lookup. A lookup goes to the `fast` group;
analysis, planning and summaries, which read several results and reason over them, go to
`deep`. The reason names the cue that decided, so the `model_selection` event can say why.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any, Literal

TaskType = Literal["lookup", "analysis", "planning", "summary"]

GROUP: dict[TaskType, str] = {
    "lookup": "fast",
    "analysis": "deep",
    "planning": "deep",
    "summary": "deep",
}

# Checked in this order: "plan a summary" is planning, "summarise why" is analysis.
CUES: tuple[tuple[TaskType, tuple[str, ...]], ...] = (
    (
        "planning",
        (
            "plan", "planning", "assign", "staff", "staffing", "capacity", "availability",
            "available", "who should", "workload", "load", "allocate", "schedule", "1:1",
            "one-on-one", "one on one", "prep", "prepare", "hire", "rota", "on-call",
            "reviewer", "free to", "bandwidth",
        ),
    ),
    (
        "analysis",
        (
            "why", "analyse", "analyze", "analysis", "trend", "trends", "compare", "comparison",
            "correlate", "correlation", "anomaly", "anomalies", "unusual", "spike", "spikes",
            "root cause", "regression", "worse", "better", "improve", "changed", "impact",
            "explain the", "breakdown",
        ),
    ),
    (
        "summary",
        (
            "summary", "summarise", "summarize", "overview", "recap", "digest", "brief",
            "report", "status of", "what happened", "highlights", "tl;dr",
        ),
    ),
)  # fmt: skip


@dataclass(frozen=True)
class Task:
    type: TaskType
    group: str
    reason: str

    def as_event(self) -> dict[str, Any]:
        return asdict(self)


def _pattern(cue: str) -> re.Pattern[str]:
    return re.compile(rf"(?<![\w-]){re.escape(cue)}(?![\w-])", re.IGNORECASE)


_PATTERNS = [(kind, [(cue, _pattern(cue)) for cue in cues]) for kind, cues in CUES]


def classify(question: str) -> Task:
    """The kind of task `question` asks for, its model group and why."""
    for kind, patterns in _PATTERNS:
        for cue, pattern in patterns:
            if pattern.search(question):
                return Task(kind, GROUP[kind], f"{kind}: the question says {cue!r}")
    return Task("lookup", GROUP["lookup"], "lookup: no analysis, planning or summary cue")
