"""Clients of the platform's subjects, as any external system would use them (CLI, tests)."""
