"""`python -m agentbus.gateway`: run the gateway service."""

from agentbus.runtime.service import main

from . import __version__
from .app import build
from .settings import GatewaySettings

if __name__ == "__main__":
    main("gateway", __version__, GatewaySettings, build)
