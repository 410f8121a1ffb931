"""Agentbus retrieval: hybrid search over chunks and named knowledge-graph queries."""

__version__ = "0.1.0"
