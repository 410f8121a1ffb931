"""Evaluations (LLM-as-judge) of recorded runs: `agentbus eval`.

Metrics are Markdown prompt files (`metrics/*.md`, see `loader`); a judge scores each recorded
run on each metric (`judges`: an LLM through LiteLLM, or the documented heuristics of
`heuristics` with the offline default model); the runner publishes one `EvaluationScored` per
run and metric and writes a JSON report (`runner`); `command` is the CLI front end.
"""
