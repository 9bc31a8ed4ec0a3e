"""What the orchestrator knows of each service: its current process, steps, heartbeats, restarts.

Pure bookkeeping: every update takes the time as an argument (monotonic seconds).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from common.messages import Heartbeat


@dataclass
class ServiceView:
    name: str
    epoch: int = 0
    pid: int = 0
    version: str = ""
    state: str = "UNKNOWN"
    steps: set[str] = field(default_factory=set)  # done by the current process
    last_hb: float | None = None  # when the last heartbeat of this epoch arrived
    hb: Heartbeat | None = None
    progress_changed_at: float = 0.0
    pids: list[int] = field(default_factory=list)  # every pid seen, in order
    restarts: list[float] = field(default_factory=list)  # when each restart was observed
    supervisor_state: str = ""
    restart_requested_at: float | None = None
    restart_reason: str = ""
    escalated: bool = False
    epochs_seen: int = 0
    failure: str = ""  # why its current start cannot work (supervisord's view: common/failure.py); "" when none

    def see_pid(self, pid: int, now: float) -> bool:
        """Record a pid; True when it is a restart (a new pid after an earlier one)."""
        if not pid or pid in self.pids:
            return False
        self.pids.append(pid)
        if len(self.pids) > 1:
            self.restarts.append(now)
            if self.restart_requested_at is None:
                # a new process is booting (respawned by supervisord after a crash or a kill): the old one's
                # heartbeat age says nothing about it; it gets the grace of a requested restart until its hello
                self.restart_requested_at = now
            return True
        return False

    def new_epoch(self, epoch: int, pid: int, steps: list, now: float) -> bool:
        """A process we have not seen; returns True when it replaces an earlier one (a restart)."""
        replaced = self.epoch != 0 and epoch > self.epoch
        self.epoch = epoch
        self.pid = pid
        self.steps = set(steps)
        self.state = "WAITING"  # the new process's own heartbeat says more; never the old process's state
        self.last_hb = None
        self.hb = None
        self.progress_changed_at = now
        self.see_pid(pid, now)
        self.restart_requested_at = None  # it said hello: its heartbeats count from now on
        self.epochs_seen += 1
        return replaced

    def on_heartbeat(self, hb: Heartbeat, now: float) -> None:
        if self.hb is None or hb.progress != self.hb.progress:
            self.progress_changed_at = now
        self.hb = hb
        self.last_hb = now
        self.state = hb.state
        self.pid = hb.pid
        self.steps |= set(hb.steps)

    def restarts_within(self, window_s: float, now: float) -> int:
        return sum(1 for t in self.restarts if now - t <= window_s)

    def hb_age(self, now: float) -> float | None:
        return None if self.last_hb is None else now - self.last_hb

    def alive(self, now: float, timeout_s: float) -> bool:
        age = self.hb_age(now)
        return age is not None and age <= timeout_s
