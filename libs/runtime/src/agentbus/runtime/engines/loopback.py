"""Hold a server that can only listen on every interface to loopback (an LD_PRELOAD shim).

The shim (loopback_bind.c, next to this file) is compiled once per source version with the
system's C compiler into a cache directory and handed to the server through LD_PRELOAD. Plain
-O2, no -march: it must load on any x86-64 (or other) CPU the engines run on. Without a compiler
the engine refuses to start rather than listen on the network.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from .errors import EngineError

SOURCE = Path(__file__).with_name("loopback_bind.c")
_INSTALL_HINT = "install gcc (Debian: deploy/tools/install-system.sh cc:gcc)"


def cache_dir() -> Path:
    """Where compiled shims are kept: $AGENTBUS_CACHE_DIR, else $XDG_CACHE_HOME/agentbus."""
    explicit = os.environ.get("AGENTBUS_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "agentbus"


def compiler() -> str | None:
    for name in (os.environ.get("CC", ""), "cc", "gcc", "clang"):
        if name and (found := shutil.which(name)):
            return found
    return None


def loopback_shim(fallback_dir: Path, engine: str) -> Path:
    """The compiled shim, built now if this version of the source is not in the cache yet.

    `fallback_dir` (the engine's data dir) holds it when the cache directory is not writable.
    """
    source = SOURCE.read_bytes()
    name = f"loopback-bind-{hashlib.sha256(source).hexdigest()[:16]}.so"
    for directory in (cache_dir(), fallback_dir):
        target = directory / name
        if target.is_file():
            return target
        with contextlib.suppress(OSError):
            directory.mkdir(parents=True, exist_ok=True)
            if os.access(directory, os.W_OK):
                return _compile(target, engine)
    raise EngineError(f"{engine}: no writable directory for the loopback shim ({name})")


def _compile(target: Path, engine: str) -> Path:
    cc = compiler()
    if cc is None:
        raise EngineError(
            f"{engine}: a C compiler is needed to hold the server to 127.0.0.1; {_INSTALL_HINT}"
        )
    # Compile beside the target and rename: concurrent starts never load a half-written file.
    fd, scratch = tempfile.mkstemp(prefix=".loopback-", suffix=".so", dir=target.parent)
    os.close(fd)
    try:
        result = subprocess.run(
            [cc, "-shared", "-fPIC", "-O2", "-o", scratch, str(SOURCE), "-ldl"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if result.returncode != 0:
            why = (result.stderr.strip().splitlines() or ["no output"])[-1]
            raise EngineError(f"{engine}: compiling the loopback shim failed: {why}")
        os.replace(scratch, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(scratch)
    return target


def preload_env(env: dict[str, str], shim: Path) -> dict[str, str]:
    """`env` with the shim first in LD_PRELOAD (anything already preloaded stays)."""
    preloaded = env.get("LD_PRELOAD", "")
    return {**env, "LD_PRELOAD": f"{shim} {preloaded}".strip()}
