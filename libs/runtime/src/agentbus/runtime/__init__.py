"""What every Agentbus service shares: settings, broker, telemetry, logging, health, engines."""

__version__ = "0.1.0"
