"""Small helpers for ports and data directories, shared by the engines and the platform."""

from __future__ import annotations

import collections
import errno
import os
import random
import socket
import tempfile
import threading
from pathlib import Path

from .errors import EngineError

# Ports handed out recently by free_port. The kernel may return the same ephemeral port to two
# bind(0) calls once the first socket is closed, so engines started concurrently (EngineSet)
# could otherwise be given the same "free" port before either has bound it.
_RECENT_LIMIT = 512
_recent: collections.deque[int] = collections.deque(maxlen=_RECENT_LIMIT)
_recent_lock = threading.Lock()
# Lower bound when free_port draws a port itself: clear of the well-known and common dev ports.
_LOWEST_CHOSEN = 10000


def _bind_probe(port: int, host: str) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    # Servers set SO_REUSEADDR; doing the same means lingering TIME_WAIT connections of a
    # previous run do not count as "in use" while a real listener still does.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except BaseException:
        sock.close()
        raise
    return sock


def free_port(host: str = "127.0.0.1", *, highest: int | None = None) -> int:
    """A TCP port on `host` that nothing listens on right now.

    By default the kernel picks it (from the ephemeral range, 32768 and up on Linux). With
    `highest`, the port is drawn at random from 10000..highest instead, for servers that cannot
    take high port numbers.

    There is a window between this call and the server binding the port; the launchers turn a
    lost race into a clear EngineError rather than trying to close it.
    """
    with _recent_lock:
        for _ in range(200):
            if highest is None:
                with _bind_probe(0, host) as sock:
                    port = int(sock.getsockname()[1])
            else:
                port = random.randint(_LOWEST_CHOSEN, highest)
                if port in _recent or port_in_use(port, host):
                    continue
            if port not in _recent:
                _recent.append(port)
                return port
    raise OSError(errno.EADDRNOTAVAIL, f"no free port found on {host}")


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """True if a server could not bind `port` on `host` (something already listens there)."""
    try:
        with _bind_probe(port, host):
            return False
    except OSError:
        return True


def ensure_writable_dir(path: Path, engine: str) -> Path:
    """Create `path` (and its parents) and prove it is writable; return it as an absolute path.

    Writes a scratch file rather than trusting os.access: as root os.access says yes to
    everything, yet a read-only mount or a path below a regular file still fails.
    """
    path = path.expanduser().absolute()
    if path.exists() and not path.is_dir():
        raise EngineError(f"{engine}: data dir {path} is not writable (it is a file)")
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, scratch = tempfile.mkstemp(prefix=".write-test-", dir=path)
        os.close(fd)
        os.unlink(scratch)
    except OSError as exc:
        reason = exc.strerror or exc.__class__.__name__
        raise EngineError(f"{engine}: data dir {path} is not writable ({reason})") from None
    return path
