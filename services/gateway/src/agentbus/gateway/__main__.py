"""`python -m agentbus.gateway`: run the gateway service. `SERVICE` is also the package's entry
point in the group `agentbus.services` (see agentbus.runtime.service_entry)."""

from agentbus.runtime.service_entry import ServiceEntry

from . import __version__
from .app import build
from .settings import GatewaySettings

SERVICE = ServiceEntry("gateway", __version__, GatewaySettings, build)

if __name__ == "__main__":
    SERVICE.run()
