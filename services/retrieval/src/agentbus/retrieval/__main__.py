"""`python -m agentbus.retrieval`: run the retrieval service."""

from agentbus.runtime.service import main

from . import __version__
from .app import build
from .settings import RetrievalSettings

if __name__ == "__main__":
    main("retrieval", __version__, RetrievalSettings, build)
