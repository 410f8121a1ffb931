"""The supervisor's decisions (pure logic, fake processes and clock); the real thing, killing
engines and services of a running platform, is tests/e2e/test_supervision.py."""

from __future__ import annotations

from agentbus.runtime.supervision import Health, Supervisor


class FakeProcess:
    def __init__(self, *, fails_to_start: int = 0) -> None:
        self.up = True
        self.starts = 0
        self.fails_to_start = fails_to_start

    def alive(self) -> bool:
        return self.up

    def restart(self) -> None:
        self.starts += 1
        if self.fails_to_start:
            self.fails_to_start -= 1
            raise RuntimeError("port in use")
        self.up = True


def supervised(proc: FakeProcess, **kwargs: float) -> tuple[Supervisor, list[str]]:
    lines: list[str] = []
    sup = Supervisor(lines.append, **kwargs)  # type: ignore[arg-type]
    sup.watch("postgres", proc.alive, proc.restart, lambda: "signal SIGKILL: bye")
    return sup, lines


def test_a_dead_process_is_restarted_after_a_delay() -> None:
    proc = FakeProcess()
    sup, lines = supervised(proc, initial_delay_s=0.5)
    sup.check(now=100.0)
    assert proc.starts == 0 and lines == []
    proc.up = False
    sup.check(now=101.0)
    assert sup.health() == {"postgres": Health.RESTARTING}
    assert lines == [
        "agentbus: postgres stopped unexpectedly (signal SIGKILL: bye); restarting in 0.5s"
    ]
    sup.check(now=101.2)
    assert proc.starts == 0  # not yet due
    sup.check(now=101.6)
    assert proc.starts == 1 and proc.up
    assert sup.health() == {"postgres": Health.RUNNING}
    assert lines[-1].startswith("agentbus: postgres is back (restart 1,")


def test_the_delay_doubles_and_a_crash_loop_is_given_up() -> None:
    proc = FakeProcess()
    sup, lines = supervised(proc, initial_delay_s=1.0, max_delay_s=4.0, window_s=60.0)
    sup.max_restarts = 3
    now = 0.0
    delays = []
    for _ in range(3):
        proc.up = False
        sup.check(now=now)
        due = float(lines[-1].rsplit(" ", 1)[1].rstrip("s"))
        delays.append(due)
        now += due
        sup.check(now=now)
        assert proc.up
        now += 1.0
    assert delays == [1.0, 2.0, 4.0]
    proc.up = False
    sup.check(now=now)
    assert sup.health() == {"postgres": Health.FAILED}
    assert sup.failed() == ["postgres"]
    assert "keeps stopping (3 restarts in 60s); not restarting it again" in lines[-1]
    sup.check(now=now + 100)
    assert proc.starts == 3  # failed stays failed


def test_restarts_outside_the_window_are_forgotten() -> None:
    proc = FakeProcess()
    sup, _ = supervised(proc, initial_delay_s=0.0, window_s=10.0)
    sup.max_restarts = 2
    for now in (0.0, 20.0, 40.0, 60.0):
        proc.up = False
        sup.check(now=now)
        sup.check(now=now)
    assert proc.starts == 4 and sup.health() == {"postgres": Health.RUNNING}


def test_a_failed_restart_is_tried_again() -> None:
    proc = FakeProcess(fails_to_start=1)
    sup, lines = supervised(proc, initial_delay_s=0.0)
    proc.up = False
    sup.check(now=1.0)
    sup.check(now=1.0)
    assert "did not restart (port in use); trying again" in lines[-1]
    sup.check(now=1e9)
    assert proc.up and proc.starts == 2


def test_a_paused_process_is_left_alone_until_resumed() -> None:
    proc = FakeProcess()
    sup, lines = supervised(proc, initial_delay_s=0.0)
    sup.pause("postgres")
    proc.up = False
    sup.check(now=1.0)
    assert proc.starts == 0 and lines == []
    assert sup.health() == {"postgres": Health.PAUSED}
    proc.up = True  # started again by whoever stopped it
    sup.resume("postgres")
    proc.up = False
    sup.check(now=2.0)
    sup.check(now=2.0)
    assert proc.starts == 1


def test_a_restart_that_resumes_on_its_own_keeps_the_crash_count() -> None:
    """Platform.start_service calls resume(); when the supervisor itself restarts a service
    through it, the count of recent restarts must survive, or a crash loop never ends."""
    proc = FakeProcess()
    lines: list[str] = []
    sup = Supervisor(lines.append, initial_delay_s=0.0, max_restarts=2)

    def restart() -> None:
        proc.restart()
        sup.resume("orchestrator")

    sup.watch("orchestrator", proc.alive, restart, lambda: "signal SIGKILL")
    for now in (1.0, 2.0):
        proc.up = False
        sup.check(now=now)
        sup.check(now=now)
    assert "restart 2," in lines[-1]
    proc.up = False
    sup.check(now=3.0)
    assert sup.health() == {"orchestrator": Health.FAILED}
