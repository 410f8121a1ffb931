"""Agentbus ingest: documents and domain events into chunks, embeddings and the graph."""

__version__ = "0.1.0"
