"""Agentbus analytics: events into ClickHouse; usage, cost and DORA queries; evaluations."""

__version__ = "0.1.0"
