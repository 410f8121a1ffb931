"""`python -m agentbus.orchestrator`: run the orchestrator service."""

from agentbus.runtime.service import main

from . import __version__
from .app import build
from .settings import OrchestratorSettings

if __name__ == "__main__":
    main("orchestrator", __version__, OrchestratorSettings, build)
