"""Agentbus gateway: the HTTP and Server-Sent Events front door of the platform."""

__version__ = "0.1.0"
