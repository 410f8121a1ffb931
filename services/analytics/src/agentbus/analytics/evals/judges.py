"""Judges: an LLM through LiteLLM when a real model is configured, else the metric's heuristic.

Which one is decided once per evaluation from the judge model (`AGENTBUS_EVAL_MODEL`, default
the `deep` group): a group of the LiteLLM Router config the orchestrator uses
(`AGENTBUS_MODELS_CONFIG`, else the orchestrator's packaged models.yaml when it is installed
here), or a LiteLLM model id. When every deployment behind it is a
`local/...` model (the offline default `local/extractive` copies sentences and cannot grade),
the judge is the heuristic of each metric, and says so in every score.
"""

from __future__ import annotations

import importlib.util
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import yaml  # type: ignore[import-untyped]

from .heuristics import HEURISTICS
from .loader import Metric

JudgeKind = Literal["llm", "heuristic"]
LOCAL_PREFIX = "local/"
# Used when no Router config is given: the orchestrator's packaged defaults are all local too.
OFFLINE_DEFAULT = "local/extractive"

SYSTEM = (
    "You are a strict, impartial evaluator of an AI assistant's answers. Follow the rubric, "
    "judge only what it asks, and reply with JSON only."
)


class JudgeError(RuntimeError):
    """A judge that could not produce a score for one run and metric."""


@dataclass(frozen=True)
class Score:
    score: float  # 0..1, 1 best
    reason: str
    judge: JudgeKind
    judge_model: str | None


class Judge(Protocol):
    kind: JudgeKind
    model: str | None

    async def score(
        self, metric: Metric, question: str, answer: str, contexts: list[str]
    ) -> Score: ...


class HeuristicJudge:
    kind: JudgeKind = "heuristic"

    def __init__(self, model: str | None = OFFLINE_DEFAULT) -> None:
        # The model that was configured (and could not judge), for the report.
        self.model = model

    async def score(self, metric: Metric, question: str, answer: str, contexts: list[str]) -> Score:
        value, reason = HEURISTICS[metric.heuristic](question, answer, contexts)
        return Score(value, f"{metric.heuristic}: {reason}", "heuristic", self.model)


# -- parsing the LLM's verdict ---------------------------------------------------------------------

_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL | re.IGNORECASE)
_OBJECT = re.compile(r"\{.*?\}", re.DOTALL)
_LABELLED = re.compile(
    r"\bscore\b\W{0,5}(-?\d+(?:\.\d+)?)(?:\s*(?:/|out\s+of)\s*(\d+(?:\.\d+)?))?", re.IGNORECASE
)
_FRACTION = re.compile(r"(-?\d+(?:\.\d+)?)\s*(?:/|out\s+of)\s*(\d+(?:\.\d+)?)", re.IGNORECASE)
_REASON = re.compile(r"\breason(?:ing)?\b\s*[:=\-]\s*(.+)", re.IGNORECASE | re.DOTALL)


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        match = re.search(r"-?\d+(?:\.\d+)?", value)
        if match is None:
            return None
        number = float(match.group(0))
    else:
        return None
    return number if math.isfinite(number) else None


def _rescale(raw: float, out_of: float | None, metric: Metric) -> float:
    """A score given "out of N" when N is not the metric's max is mapped onto its scale."""
    if out_of and out_of > 0 and out_of != metric.scale_max:
        return metric.scale_min + (raw / out_of) * (metric.scale_max - metric.scale_min)
    return raw


def parse_verdict(text: str, metric: Metric) -> tuple[float, str]:
    """The judge's raw score (on the metric's scale) and reason, from whatever it replied.

    Tried in order: a JSON object (also inside a ``` fence) with `score` (or `rating`) and
    `reason`; a labelled "score: 4" or "Score: 4/5"; a bare "4/5". A number outside the scale
    is an error rather than a clamp: it means the judge did not follow the rubric.
    """
    candidates = [m.group(1) for m in _FENCE.finditer(text)] + [text]
    candidates += [m.group(0) for m in _OBJECT.finditer(text)]
    for chunk in candidates:
        try:
            data = json.loads(chunk.strip())
        except ValueError:
            continue
        if isinstance(data, dict):
            raw = _number(data.get("score", data.get("rating")))
            if raw is not None:
                reason = data.get("reason", data.get("explanation", ""))
                return _checked(raw, metric, text), str(reason or "").strip()
    labelled = _LABELLED.search(text)
    fraction = labelled or _FRACTION.search(text)
    if fraction is None:
        raise JudgeError(f"no score in the judge's reply: {text.strip()[:200]!r}")
    out_of = float(fraction.group(2)) if fraction.group(2) else None
    raw = _rescale(float(fraction.group(1)), out_of, metric)
    reason_match = _REASON.search(text)
    reason = reason_match.group(1) if reason_match else _FRACTION.sub("", _LABELLED.sub("", text))
    return _checked(raw, metric, text), " ".join(reason.split()).strip(" .,:;-")[:2000]


def _checked(raw: float, metric: Metric, text: str) -> float:
    if not metric.scale_min <= raw <= metric.scale_max:
        raise JudgeError(
            f"score {raw:g} is outside the scale {metric.scale_min:g}-{metric.scale_max:g}: "
            f"{text.strip()[:200]!r}"
        )
    return raw


def instructions(metric: Metric) -> str:
    low, high = f"{metric.scale_min:g}", f"{metric.scale_max:g}"
    return (
        f'\n\nReply with only a JSON object: {{"score": <number from {low} to {high}>, '
        '"reason": "<one or two sentences>"}'
    )


# -- the LLM judge ---------------------------------------------------------------------------------


class LlmJudge:
    kind: JudgeKind = "llm"

    def __init__(self, model: str, router: Any | None, label: str) -> None:
        self.target = model  # a Router group, or a LiteLLM model id when router is None
        self.router = router
        self.model: str | None = label

    async def _complete(self, messages: list[dict[str, str]]) -> str:
        if self.router is not None:
            response = await self.router.acompletion(
                model=self.target, messages=messages, temperature=0
            )
        else:
            from agentbus.runtime.llm.client import litellm

            response = await litellm.acompletion(
                model=self.target, messages=messages, temperature=0
            )
        return str(response.choices[0].message.content or "")

    async def score(self, metric: Metric, question: str, answer: str, contexts: list[str]) -> Score:
        messages = [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": metric.render(question, answer, contexts)},
        ]
        messages[1]["content"] += instructions(metric)
        try:
            text = await self._complete(messages)
        except Exception as exc:  # provider errors are many types; one run's score fails
            raise JudgeError(f"{self.model}: {type(exc).__name__}: {str(exc)[:300]}") from None
        raw, reason = parse_verdict(text, metric)
        return Score(metric.normalise(raw), reason, "llm", self.model)


# -- choosing one ----------------------------------------------------------------------------------


def _router_config(config: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The model list and router settings of a LiteLLM Router config file."""
    try:
        data = yaml.safe_load(config.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise JudgeError(f"cannot read the models config {config}: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("model_list"), list):
        raise JudgeError(f"{config}: needs a `model_list` (LiteLLM Router format)")
    settings = data.get("router_settings") or {}
    if not isinstance(settings, dict):
        raise JudgeError(f"{config}: `router_settings` must be a mapping")
    return [m for m in data["model_list"] if isinstance(m, dict)], settings


def _deployment(entry: dict[str, Any]) -> str:
    params = entry.get("litellm_params")
    return str(params.get("model", "")) if isinstance(params, dict) else ""


def orchestrator_models_config() -> Path | None:
    """The Router config the orchestrator uses when AGENTBUS_MODELS_CONFIG is unset: the
    models.yaml packaged next to its code. Located, never imported (services stay apart)."""
    try:
        spec = importlib.util.find_spec("agentbus.orchestrator")
    except (ImportError, ValueError):
        return None
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).resolve().parent / "models.yaml"
    return path if path.is_file() else None


def choose_judge(model: str, models_config: Path | None) -> Judge:
    """The LLM judge for `model`, or the heuristics when only a local model stands behind it."""
    if models_config is None:
        if model.startswith(LOCAL_PREFIX) or "/" not in model:
            # A bare group name with no Router config: the orchestrator's defaults are local.
            return HeuristicJudge(OFFLINE_DEFAULT if "/" not in model else model)
        return LlmJudge(model, None, model)
    entries, router_settings = _router_config(models_config)
    group = [_deployment(e) for e in entries if e.get("model_name") == model]
    if not group:
        if model.startswith(LOCAL_PREFIX):
            return HeuristicJudge(model)
        if "/" not in model:
            groups = sorted({str(e.get("model_name")) for e in entries})
            raise JudgeError(
                f"judge model {model!r} is not a group of {models_config} "
                f"(groups: {', '.join(groups)}) nor a provider/model id"
            )
        return LlmJudge(model, None, model)
    remote = [d for d in group if not d.startswith(LOCAL_PREFIX)]
    if not remote:
        return HeuristicJudge(group[0])
    # Through runtime.llm.client: LiteLLM set up offline-safe before its first import.
    from agentbus.runtime.llm.client import litellm

    # Local deployments cannot grade; keep the Router from picking one of them.
    usable = [e for e in entries if _deployment(e) and not _deployment(e).startswith(LOCAL_PREFIX)]
    try:
        router = litellm.router.Router(model_list=usable, **router_settings)
    except Exception as exc:
        raise JudgeError(f"{models_config}: {exc}") from None
    return LlmJudge(model, router, f"{model} ({', '.join(dict.fromkeys(remote))})")
