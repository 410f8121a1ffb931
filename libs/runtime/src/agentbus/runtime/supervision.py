"""Keep the platform's child processes alive: restart what dies, with backoff, and give up loudly.

`agentbus up` runs four engines and five services on one machine. Before this, a server that died
(an engine crashing on a document, an OOM kill, a `kill -9`) stayed dead: readiness went red for
good, services retried for ever and a client's stream hung. The supervisor notices an unexpected
exit within a fraction of a second, says so in one line, and starts the process again on the same
ports, so services reconnect to the address they were given and work in flight is redelivered.

A process that keeps dying is not restarted for ever: after `max_restarts` within `window_s` the
supervisor stops trying and says why, with the last line of the process's own log. Deliberate stops
(`Platform.stop_service`, shutdown) pause supervision of that process first, so they are not undone.

It is a plain thread, not asyncio: the launcher is synchronous, and restarting an engine blocks
(initdb, readiness probes) for seconds.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum


class Health(StrEnum):
    RUNNING = "running"
    RESTARTING = "restarting"
    FAILED = "failed"  # crash loop: no longer restarted
    PAUSED = "paused"  # stopped on purpose


@dataclass
class Watched:
    """One supervised process: how to tell it is alive, how to start it again, what it said."""

    name: str
    alive: Callable[[], bool]
    restart: Callable[[], None]
    # How it ended and its last words, for the log line ("signal SIGKILL: <last log line>").
    describe: Callable[[], str]
    health: Health = Health.RUNNING
    restarts: list[float] = field(default_factory=list)  # monotonic times of restarts
    due: float = 0.0  # when the next restart attempt may run
    died_at: float = 0.0


class Supervisor:
    def __init__(
        self,
        log: Callable[[str], None],
        *,
        max_restarts: int = 5,
        window_s: float = 60.0,
        initial_delay_s: float = 0.5,
        max_delay_s: float = 10.0,
        poll_s: float = 0.2,
        on_change: Callable[[str], None] | None = None,
    ) -> None:
        self._log = log
        self.max_restarts = max_restarts
        self.window_s = window_s
        self.initial_delay_s = initial_delay_s
        self.max_delay_s = max_delay_s
        self.poll_s = poll_s
        # Told the name of a process that came back or was given up (e.g. to rewrite pid files).
        self._on_change = on_change
        self._watched: dict[str, Watched] = {}
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- what is watched -----------------------------------------------------------------------

    def watch(
        self,
        name: str,
        alive: Callable[[], bool],
        restart: Callable[[], None],
        describe: Callable[[], str],
    ) -> None:
        with self._lock:
            self._watched[name] = Watched(name, alive, restart, describe)

    def pause(self, name: str) -> None:
        """Stop watching `name` until resume(): it is being stopped on purpose."""
        with self._lock:
            if name in self._watched:
                self._watched[name].health = Health.PAUSED

    def resume(self, name: str) -> None:
        """Watch `name` again after pause() (a no-op otherwise: a restart the supervisor makes
        itself must not wipe the count that tells a crash loop)."""
        with self._lock:
            watched = self._watched.get(name)
            if watched is not None and watched.health is Health.PAUSED:
                watched.health = Health.RUNNING
                watched.restarts.clear()

    def health(self) -> dict[str, Health]:
        with self._lock:
            return {name: w.health for name, w in self._watched.items()}

    def failed(self) -> list[str]:
        return [name for name, health in self.health().items() if health is Health.FAILED]

    # -- the loop ------------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="supervisor", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop supervising (before a shutdown stops the processes). Waits for a restart in
        progress to finish, so nothing is started behind the shutdown's back."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.poll_s):
            self.check()

    def check(self, now: float | None = None) -> None:
        """One pass: notice deaths, run the restarts that are due. Public for tests."""
        with self._lock:
            for watched in list(self._watched.values()):
                if self._stop.is_set():
                    return
                self._check_one(watched, time.monotonic() if now is None else now)

    def _check_one(self, w: Watched, now: float) -> None:
        if w.health is Health.RUNNING:
            if w.alive():
                return
            w.died_at = now
            w.restarts = [t for t in w.restarts if now - t < self.window_s]
            if len(w.restarts) >= self.max_restarts:
                self._give_up(w)
                return
            w.health = Health.RESTARTING
            w.due = now + self._delay(w)
            self._log(
                f"agentbus: {w.name} stopped unexpectedly ({w.describe()}); "
                f"restarting in {w.due - now:.1f}s"
            )
        if w.health is Health.RESTARTING and now >= w.due:
            w.restarts.append(now)
            try:
                w.restart()
            except Exception as exc:
                w.restarts = [t for t in w.restarts if now - t < self.window_s]
                if len(w.restarts) >= self.max_restarts:
                    self._give_up(w, str(exc))
                    return
                w.due = time.monotonic() + self._delay(w)
                self._log(f"agentbus: {w.name} did not restart ({exc}); trying again")
                return
            w.health = Health.RUNNING
            took = time.monotonic() - w.died_at if w.died_at else 0.0
            self._log(
                f"agentbus: {w.name} is back (restart {len(w.restarts)}, "
                f"{took:.1f}s after it stopped)"
            )
            self._changed(w.name)

    def _delay(self, w: Watched) -> float:
        # Doubles with each recent restart: a process that dies at once is not hammered.
        return float(min(self.max_delay_s, self.initial_delay_s * 2 ** len(w.restarts)))

    def _give_up(self, w: Watched, why: str | None = None) -> None:
        w.health = Health.FAILED
        self._log(
            f"agentbus: {w.name} keeps stopping ({len(w.restarts)} restarts in "
            f"{self.window_s:.0f}s); not restarting it again. Last: {why or w.describe()}"
        )
        self._changed(w.name)

    def _changed(self, name: str) -> None:
        if self._on_change is not None:
            self._on_change(name)
