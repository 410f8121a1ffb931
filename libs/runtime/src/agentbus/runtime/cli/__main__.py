"""`python -m agentbus.runtime.cli`, as `agentbus up --detach` starts the platform."""

import sys

from . import main

sys.exit(main())
