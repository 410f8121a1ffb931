"""Agentbus orchestrator: executes LangGraph runs pulled from the RUNS work queue."""

__version__ = "0.1.0"
