"""Evaluation metrics as Markdown files: adding a metric is dropping a file.

A metric file is YAML front matter between `---` lines, then the judge prompt:

    ---
    name: relevancy                 # must equal the file name (relevancy.md)
    description: one line for the report
    scale: {min: 1, max: 5}         # the scale the LLM judge answers in
    higher_is_better: true          # false: the judge's max is the worst (e.g. toxicity)
    heuristic: question_overlap     # the offline judge (see heuristics.HEURISTICS)
    ---
    The prompt, with {{question}}, {{answer}} and {{contexts}} where the run's text goes.

Every score is normalised to 0..1 with 1 best, whatever the file's scale and direction, so
metrics compare and the `EvaluationScored` contract holds. A file that breaks any rule is a
`MetricFileError` naming the file and the rule: a broken metric never silently disappears.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml  # type: ignore[import-untyped]

from .heuristics import HEURISTICS

BUILTIN_DIR = Path(__file__).resolve().parent / "metrics"
PLACEHOLDERS = frozenset({"question", "answer", "contexts"})
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")  # EvaluationScored.metric
_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
_FIELDS = {"name", "description", "scale", "higher_is_better", "heuristic"}


class MetricFileError(ValueError):
    """A metric file that cannot be used; the message names the file and what is wrong."""


@dataclass(frozen=True)
class Metric:
    name: str
    description: str
    scale_min: float
    scale_max: float
    higher_is_better: bool
    heuristic: str
    prompt: str
    path: Path

    def render(self, question: str, answer: str, contexts: list[str]) -> str:
        """The judge prompt with the run's text in place of the placeholders."""
        numbered = "\n".join(f"[{i}] {c}" for i, c in enumerate(contexts, 1)) or "(none)"
        values = {"question": question or "(none)", "answer": answer or "(empty)"}
        values["contexts"] = numbered
        return _PLACEHOLDER.sub(lambda m: values[m.group(1)], self.prompt)

    def normalise(self, raw: float) -> float:
        """A judge's raw score on the file's scale, as 0..1 with 1 best (clamped)."""
        clamped = min(max(raw, self.scale_min), self.scale_max)
        fraction = (clamped - self.scale_min) / (self.scale_max - self.scale_min)
        return fraction if self.higher_is_better else 1.0 - fraction


def _split(text: str, path: Path) -> tuple[dict[str, Any], str]:
    lines = text.splitlines()
    if not lines or lines[0].strip() != "---":
        raise MetricFileError(f"{path}: must start with a `---` front matter line")
    try:
        end = next(i for i, line in enumerate(lines[1:], 1) if line.strip() == "---")
    except StopIteration:
        raise MetricFileError(f"{path}: front matter is not closed by a `---` line") from None
    try:
        meta = yaml.safe_load("\n".join(lines[1:end]))
    except yaml.YAMLError as exc:
        problem = str(exc).splitlines()[0]
        raise MetricFileError(f"{path}: front matter is not valid YAML: {problem}") from None
    if not isinstance(meta, dict):
        raise MetricFileError(f"{path}: front matter must be a mapping of fields")
    return meta, "\n".join(lines[end + 1 :]).strip()


def _scale(value: Any, path: Path) -> tuple[float, float]:
    if not isinstance(value, dict) or set(value) != {"min", "max"}:
        raise MetricFileError(f"{path}: `scale` must be {{min: <number>, max: <number>}}")
    low, high = value["min"], value["max"]
    numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in (low, high))
    if not numbers or not low < high:
        raise MetricFileError(f"{path}: `scale` needs numbers with min < max, got {value}")
    return float(low), float(high)


def parse_metric(path: Path) -> Metric:
    """Read and check one metric file."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise MetricFileError(f"{path}: cannot read: {exc}") from None
    meta, prompt = _split(text, path)
    missing = sorted(_FIELDS - meta.keys())
    if missing:
        raise MetricFileError(f"{path}: front matter misses {', '.join(missing)}")
    unknown = sorted(set(meta) - _FIELDS)
    if unknown:
        raise MetricFileError(f"{path}: unknown front matter field(s) {', '.join(unknown)}")
    name = meta["name"]
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise MetricFileError(
            f"{path}: `name` must be lower-case letters, digits, - or _ (got {name!r})"
        )
    if name != path.stem:
        raise MetricFileError(f"{path}: `name` {name!r} must match the file name {path.stem!r}")
    description = meta["description"]
    if not isinstance(description, str) or not description.strip():
        raise MetricFileError(f"{path}: `description` must be a non-empty string")
    low, high = _scale(meta["scale"], path)
    if not isinstance(meta["higher_is_better"], bool):
        raise MetricFileError(f"{path}: `higher_is_better` must be true or false")
    heuristic = meta["heuristic"]
    if heuristic not in HEURISTICS:
        known = ", ".join(sorted(HEURISTICS))
        raise MetricFileError(f"{path}: unknown `heuristic` {heuristic!r}; known: {known}")
    if not prompt:
        raise MetricFileError(f"{path}: the judge prompt after the front matter is empty")
    used = set(_PLACEHOLDER.findall(prompt))
    if used - PLACEHOLDERS:
        bad = ", ".join(f"{{{{{p}}}}}" for p in sorted(used - PLACEHOLDERS))
        raise MetricFileError(
            f"{path}: unknown placeholder(s) {bad}; use {{{{question}}}}, {{{{answer}}}}, "
            "{{contexts}}"
        )
    if "answer" not in used:
        raise MetricFileError(f"{path}: the prompt must contain {{{{answer}}}}")
    return Metric(
        name=name,
        description=" ".join(description.split()),
        scale_min=low,
        scale_max=high,
        higher_is_better=meta["higher_is_better"],
        heuristic=heuristic,
        prompt=prompt,
        path=path,
    )


def load_metrics(*extra_dirs: Path | None) -> dict[str, Metric]:
    """Built-in metrics, then each extra directory's (a file with the same name replaces one).

    Ordered by name so reports and tables are stable.
    """
    found: dict[str, Metric] = {}
    for directory in (BUILTIN_DIR, *extra_dirs):
        if directory is None:
            continue
        if not directory.is_dir():
            raise MetricFileError(f"{directory}: metrics directory does not exist")
        for path in sorted(directory.glob("*.md")):
            if path.name.lower() == "readme.md":
                continue
            metric = parse_metric(path)
            found[metric.name] = metric
    return dict(sorted(found.items()))


def select(metrics: dict[str, Metric], names: list[str] | None) -> list[Metric]:
    """The metrics asked for by name (all when none are named); an unknown name is an error."""
    if not names:
        return list(metrics.values())
    unknown = [n for n in names if n not in metrics]
    if unknown:
        raise MetricFileError(
            f"unknown metric(s) {', '.join(unknown)}; available: {', '.join(metrics)}"
        )
    return [metrics[n] for n in dict.fromkeys(names)]
