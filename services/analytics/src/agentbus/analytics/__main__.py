"""`python -m agentbus.analytics`: run the analytics service."""

from agentbus.runtime.service import main

from . import __version__
from .app import build
from .settings import AnalyticsSettings

if __name__ == "__main__":
    main("analytics", __version__, AnalyticsSettings, build)
