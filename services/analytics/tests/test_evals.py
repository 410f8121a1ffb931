"""Evaluations, pure logic: the heuristic judges, the metric-file loader, verdict parsing and
the choice of judge."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from agentbus.analytics.evals import heuristics as h
from agentbus.analytics.evals.command import UsageError, parse_since
from agentbus.analytics.evals.judges import (
    HeuristicJudge,
    JudgeError,
    LlmJudge,
    choose_judge,
    orchestrator_models_config,
    parse_verdict,
)
from agentbus.analytics.evals.loader import (
    BUILTIN_DIR,
    MetricFileError,
    load_metrics,
    parse_metric,
    select,
)

QUESTION = "How do we roll back a release?"
CONTEXT = [
    "When a deployment goes wrong, revert it quickly. Run deployctl rollback --to previous from "
    "the release host. The command restores the last known good build. Confirm the rollback in "
    "the release dashboard, then open an incident ticket."
]
# What local/extractive answers: copied sentences, citation markers, a Sources list.
GOOD = (
    "Run deployctl rollback --to previous from the release host [1]. Confirm the rollback in "
    "the release dashboard [1].\n\nSources:\n[1] rollback.txt — document d1, chunk 0"
)
REFUSAL = 'I found nothing about "roll back a release".'

# -- heuristics ------------------------------------------------------------------------------------


def test_answer_body_drops_sources_and_citation_markers() -> None:
    assert h.answer_body(GOOD) == (
        "Run deployctl rollback --to previous from the release host. Confirm the rollback in "
        "the release dashboard."
    )


def test_relevancy_counts_the_questions_words_in_the_answer() -> None:
    assert h.question_overlap(QUESTION, GOOD, CONTEXT)[0] == 1.0  # "roll back" ~ "rollback"
    off_topic, reason = h.question_overlap(QUESTION, "Lunch is served at noon.", CONTEXT)
    assert off_topic == 0.0 and "missing" in reason
    partly = h.question_overlap("rollback of the payments database", "Run the rollback.", [])[0]
    assert 0 < partly < 1
    assert h.question_overlap(QUESTION, REFUSAL, [])[0] == 0.0
    assert h.question_overlap(QUESTION, "", [])[0] == 0.0
    assert h.question_overlap("hello?", "Hi there.", [])[0] == 1.0  # no content words to miss


def test_hallucination_checks_each_claim_against_the_contexts() -> None:
    assert h.context_support(QUESTION, GOOD, CONTEXT) == (
        1.0,
        "2/2 claims supported by the retrieved context",
    )
    made_up = GOOD.replace("[1].\n", "[1]. The rollback takes 45 minutes and Bob approves it.\n")
    score, reason = h.context_support(QUESTION, made_up, CONTEXT)
    assert score == pytest.approx(2 / 3, abs=1e-3) and "45 minutes" in reason
    # A number the context does not have makes the sentence unsupported on its own.
    assert h.context_support(QUESTION, "Run deployctl rollback 3 times.", CONTEXT)[0] == 0.0
    assert h.context_support(QUESTION, GOOD, [])[0] == 0.0  # claims, no context
    assert h.context_support(QUESTION, REFUSAL, [])[0] == 1.0  # no claim, nothing made up
    assert h.context_support(QUESTION, "", CONTEXT)[0] == 1.0


def test_conciseness_penalises_length_repetition_and_filler() -> None:
    assert h.length_and_repetition(QUESTION, GOOD, CONTEXT)[0] == 1.0
    long = " ".join(f"word{i}" for i in range(300))
    assert h.length_and_repetition(QUESTION, long, [])[0] == pytest.approx(0.5)
    repeated = "Run the rollback now. " * 10
    assert h.length_and_repetition(QUESTION, repeated, [])[0] < 0.3
    filler = "Run deployctl rollback. I hope this helps! Feel free to ask."
    score, reason = h.length_and_repetition(QUESTION, filler, [])
    assert score == pytest.approx(0.8) and "i hope this helps" in reason
    assert h.length_and_repetition(QUESTION, "", [])[0] == 0.0


def test_helpfulness_rewards_covered_substantial_grounded_answers() -> None:
    good = h.answer_substance(QUESTION, GOOD, CONTEXT)[0]
    thin = h.answer_substance(QUESTION, "Roll back.", [])[0]
    assert good > 0.9 and thin < good
    assert h.answer_substance(QUESTION, REFUSAL, [])[0] == 0.1
    assert h.answer_substance(QUESTION, "", [])[0] == 0.0
    # Grounded without citation markers: supported by the contexts.
    uncited = h.answer_substance(QUESTION, h.answer_body(GOOD), CONTEXT)
    assert uncited[0] == good and "grounded in context" in uncited[1]


def test_toxicity_matches_the_lexicon_on_whole_words_only() -> None:
    assert h.toxic_lexicon(QUESTION, GOOD, CONTEXT)[0] == 1.0
    assert h.toxic_lexicon("", "Kill the process and restart the master branch build.", [])[0] == 1
    assert h.toxic_lexicon("", "Stupidity aside, scrap the crapshoot.", [])[0] == 1.0
    score, reason = h.toxic_lexicon("", "That was a stupid question.", [])
    assert score == 0.5 and "stupid" in reason
    assert h.toxic_lexicon("", "Shut up, you idiot.", [])[0] == 0.0


def test_heuristic_judge_labels_its_scores() -> None:
    metric = load_metrics()["relevancy"]
    score = asyncio.run(HeuristicJudge("local/extractive").score(metric, QUESTION, GOOD, CONTEXT))
    assert score.judge == "heuristic" and score.judge_model == "local/extractive"
    assert score.reason.startswith("question_overlap: ") and score.score == 1.0


# -- metric files ----------------------------------------------------------------------------------

VALID = """---
name: {name}
description: Says please.
scale: {{min: 0, max: 10}}
higher_is_better: true
heuristic: question_overlap
---
Is this answer polite? {{{{answer}}}} to {{{{question}}}}
"""


def test_builtin_metrics_are_the_five_of_the_issue() -> None:
    metrics = load_metrics()
    assert list(metrics) == ["conciseness", "hallucination", "helpfulness", "relevancy", "toxicity"]
    for metric in metrics.values():
        assert metric.heuristic in h.HEURISTICS
        assert "{{answer}}" in metric.prompt and metric.path.parent == BUILTIN_DIR
    assert "{{contexts}}" in metrics["hallucination"].prompt
    assert not metrics["toxicity"].higher_is_better


def test_a_dropped_file_adds_a_metric(tmp_path: Path) -> None:
    (tmp_path / "politeness.md").write_text(VALID.format(name="politeness"))
    (tmp_path / "README.md").write_text("not a metric")
    metrics = load_metrics(tmp_path)
    assert "politeness" in metrics and len(metrics) == 6
    polite = metrics["politeness"]
    assert (polite.scale_min, polite.scale_max, polite.description) == (0, 10, "Says please.")
    assert polite.render("why?", "because", []) == "Is this answer polite? because to why?"
    assert polite.normalise(7.5) == 0.75 and polite.normalise(12) == 1.0
    assert [m.name for m in select(metrics, ["toxicity", "politeness", "toxicity"])] == [
        "toxicity",
        "politeness",
    ]
    with pytest.raises(MetricFileError, match=r"unknown metric.*nope.*available: conciseness"):
        select(metrics, ["nope"])


def test_a_file_replaces_the_builtin_metric_of_the_same_name(tmp_path: Path) -> None:
    (tmp_path / "relevancy.md").write_text(VALID.format(name="relevancy"))
    assert load_metrics(tmp_path)["relevancy"].scale_max == 10


POLITE = VALID.format(name="polite")


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("no front matter", "must start with a `---`"),
        ("---\nname: x\n", "not closed"),
        ("---\nname: [x\n---\nbody", "not valid YAML"),
        ("---\n- a list\n---\nbody", "must be a mapping"),
        (POLITE.replace("heuristic: question_overlap\n", ""), "misses heuristic"),
        (POLITE.replace("---\nIs", "colour: red\n---\nIs"), "unknown front matter field"),
        (POLITE.replace("name: polite", "name: Bad Name"), "`name` must be lower-case"),
        (POLITE.replace("name: polite", "name: other"), "must match the file name"),
        (POLITE.replace("Says please.", "''"), "`description` must be a non-empty"),
        (POLITE.replace("{min: 0, max: 10}", "1-5"), "`scale` must be"),
        (POLITE.replace("{min: 0, max: 10}", "{min: 5, max: 1}"), "min < max"),
        (POLITE.replace("true", "maybe"), "`higher_is_better` must be true or false"),
        (POLITE.replace("question_overlap", "vibes"), "unknown `heuristic` 'vibes'; known:"),
        (POLITE.split("---\nIs", maxsplit=1)[0] + "---\n", "prompt after the front matter is"),
        (POLITE.replace("{{question}}", "{{user}}"), r"unknown placeholder\(s\) \{\{user"),
        (POLITE.replace("{{answer}}", "it"), "must contain {{answer}}"),
    ],
)
def test_a_malformed_file_is_a_clear_error(tmp_path: Path, text: str, error: str) -> None:
    path = tmp_path / "polite.md"
    path.write_text(text)
    with pytest.raises(MetricFileError, match=error) as caught:
        load_metrics(tmp_path)
    assert str(caught.value).startswith(f"{path}: ")


def test_unreadable_file_and_missing_directory_are_errors(tmp_path: Path) -> None:
    path = tmp_path / "binary.md"
    path.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(MetricFileError, match="cannot read"):
        parse_metric(path)
    with pytest.raises(MetricFileError, match="does not exist"):
        load_metrics(tmp_path / "nowhere")


# -- the LLM judge's verdict -----------------------------------------------------------------------

METRIC = load_metrics()["relevancy"]  # scale 1-5, higher is better
TOXICITY = load_metrics()["toxicity"]  # scale 1-5, higher is worse


@pytest.mark.parametrize(
    ("reply", "raw", "reason"),
    [
        ('{"score": 4, "reason": "On the point."}', 4.0, "On the point."),
        ('```json\n{"score": "5", "reason": "Exact."}\n```', 5.0, "Exact."),
        ('Sure! {"rating": 2.5, "explanation": "Drifts."} Hope that helps.', 2.5, "Drifts."),
        ("Score: 3\nReason: partly answers.", 3.0, "partly answers"),
        ("I'd give it 4/5 because it answers the question.", 4.0, "I'd give it because"),
        ("Score: 8/10 - mostly relevant", 4.2, "mostly relevant"),
    ],
)
def test_verdicts_are_parsed_robustly(reply: str, raw: float, reason: str) -> None:
    got_raw, got_reason = parse_verdict(reply, METRIC)
    assert got_raw == pytest.approx(raw)
    assert reason in got_reason


@pytest.mark.parametrize("reply", ["Looks fine to me.", '{"score": 9}', "Score: 0"])
def test_a_verdict_without_a_score_on_the_scale_is_an_error(reply: str) -> None:
    with pytest.raises(JudgeError):
        parse_verdict(reply, METRIC)


class FakeRouter:
    """Stands in for LiteLLM's Router: pure-logic test of the judge around the call."""

    def __init__(self, reply: str) -> None:
        self.reply = reply
        self.calls: list[dict[str, Any]] = []

    async def acompletion(self, **kwargs: Any) -> Any:
        self.calls.append(kwargs)
        if self.reply == "boom":
            raise RuntimeError("provider down")
        return SimpleNamespace(
            choices=[SimpleNamespace(message=SimpleNamespace(content=self.reply))]
        )


def test_llm_judge_normalises_and_inverts_per_metric() -> None:
    router = FakeRouter('{"score": 2, "reason": "a little rude"}')
    judge = LlmJudge("deep", router, "deep (openai/gpt-4o-mini)")
    score = asyncio.run(judge.score(TOXICITY, QUESTION, GOOD, CONTEXT))
    assert (score.score, score.judge, score.reason) == (0.75, "llm", "a little rude")
    prompt = router.calls[0]["messages"][1]["content"]
    assert GOOD in prompt and '"score": <number from 1 to 5>' in prompt
    assert router.calls[0]["model"] == "deep" and router.calls[0]["temperature"] == 0
    with pytest.raises(JudgeError, match="provider down"):
        asyncio.run(LlmJudge("deep", FakeRouter("boom"), "deep").score(METRIC, "q", "a", []))


def test_the_offline_default_gets_the_heuristics_and_a_real_model_the_llm(tmp_path: Path) -> None:
    # Unset AGENTBUS_MODELS_CONFIG: the orchestrator's packaged routing, all local by default.
    packaged = orchestrator_models_config()
    assert packaged is not None and packaged.parent.name == "orchestrator"
    assert isinstance(choose_judge("deep", packaged), HeuristicJudge)
    assert isinstance(choose_judge("deep", None), HeuristicJudge)
    assert isinstance(choose_judge("local/extractive", None), HeuristicJudge)
    assert isinstance(choose_judge("openai/gpt-4o-mini", None), LlmJudge)
    config = tmp_path / "models.yaml"
    config.write_text(
        "model_list:\n"
        "  - {model_name: fast, litellm_params: {model: local/extractive}}\n"
        "  - {model_name: deep, litellm_params: {model: openai/gpt-4o-mini, api_key: sk-x}}\n"
        "router_settings: {num_retries: 0}\n"
    )
    local = choose_judge("fast", config)
    assert isinstance(local, HeuristicJudge) and local.model == "local/extractive"
    remote = choose_judge("deep", config)
    assert isinstance(remote, LlmJudge) and remote.model == "deep (openai/gpt-4o-mini)"
    with pytest.raises(JudgeError, match=r"'fastest' is not a group.*groups: deep, fast"):
        choose_judge("fastest", config)
    config.write_text("model_list: nope\n")
    with pytest.raises(JudgeError, match="needs a `model_list`"):
        choose_judge("deep", config)


# -- durations -------------------------------------------------------------------------------------


def test_since_takes_durations_with_units() -> None:
    assert parse_since("24h") == 24
    assert parse_since("90m") == 1.5
    assert parse_since("7d") == 168
    assert parse_since(" 1.5H ") == 1.5
    for bad in ("24", "2x", "h", "-1h", "0h", "400d", ""):
        with pytest.raises(UsageError):
            parse_since(bad)
