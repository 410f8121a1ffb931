"""`python -m agentbus.ingest`: run the ingest service."""

from agentbus.runtime.service import main

from . import __version__
from .app import build
from .settings import IngestSettings

if __name__ == "__main__":
    main("ingest", __version__, IngestSettings, build)
