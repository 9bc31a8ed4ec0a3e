"""What the orchestrator knows of each service: its current process, steps, heartbeats, restarts.

Pure bookkeeping: every update takes the time as an argument (monotonic seconds). What must outlive the orchestrator
(each service's restarts, the HALTED reason and who caused it, the last alerts) is folded into a plain map by
``durable_facts`` and read back by ``restore_facts``; the shell writes it to a file on change and reads it at start.
The restart times are CLOCK_MONOTONIC seconds, one clock for every process of the host since its boot: a time past
``now`` (the host rebooted since) is dropped.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

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
    live_models: list[str] | None = None  # a preditor program: the symbols its load kept (None: not known yet)
    refused_models: list[str] = field(default_factory=list)  # a preditor program: the models its load refused

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
        self.live_models = None  # a preditor program's models are the new process's load result, when it says
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

    @property
    def counted_pid(self) -> int:
        """The newest process seen, the last ``restarts`` counts: supervisord's respawn counts before its hello (``pid``
        and ``epoch`` are the old process's until then); 0 when none was seen."""
        return self.pids[-1] if self.pids else 0

    def restarts_within(self, window_s: float, now: float) -> int:
        return sum(1 for t in self.restarts if now - t <= window_s)

    def hb_age(self, now: float) -> float | None:
        return None if self.last_hb is None else now - self.last_hb

    def alive(self, now: float, timeout_s: float) -> bool:
        age = self.hb_age(now)
        return age is not None and age <= timeout_s

    def stopped(self, now: float, timeout_s: float) -> bool:
        """supervisord says it is not running (stopped by a halt or a person, exited, given up) and no heartbeat is
        fresh: the last pid seen is gone."""
        return self.supervisor_state in STOPPED_STATES and not self.alive(now, timeout_s)

    def on_load_result(self, facts: Mapping[str, Any]) -> None:
        """A preditor program's load result (its ready's facts, or its heartbeat's ``models``/``refused_models``)."""
        models = facts.get("models")
        if isinstance(models, Mapping | list):
            self.live_models = sorted(str(s) for s in models)
        refused = facts.get("refused_models", facts.get("refused"))
        if isinstance(refused, list):
            self.refused_models = [str(r) for r in refused]


STOPPED_STATES = frozenset({"STOPPED", "EXITED", "FATAL", "STOPPING"})
MAX_KEPT_RESTARTS = 100  # per service, in the durable facts: enough for any restart window


def durable_facts(views: Iterable[ServiceView], halted_reason: str, alerts: Iterable[str]) -> dict[str, Any]:
    """What outlives the orchestrator, as a plain map (JSON)."""
    views = list(views)
    return {
        "version": 1,
        "halted_reason": halted_reason,
        "escalated": sorted(v.name for v in views if v.escalated),
        "restarts": {v.name: [round(t, 3) for t in v.restarts[-MAX_KEPT_RESTARTS:]] for v in views if v.restarts},
        "alerts": list(alerts),
    }


def restore_facts(facts: Mapping[str, Any], views: Mapping[str, ServiceView], now: float) -> tuple[str, list[str]]:
    """Put the durable facts back into ``views`` (services no longer configured are skipped); returns the HALTED
    reason and the alerts. A malformed map is a ValueError naming the key."""
    if facts.get("version") != 1:
        raise ValueError(f"version: {facts.get('version')!r} is not 1")
    halted = facts.get("halted_reason", "")
    if not isinstance(halted, str):
        raise ValueError(f"halted_reason: {halted!r} is not a string")
    restarts = facts.get("restarts", {})
    if not isinstance(restarts, Mapping):
        raise ValueError("restarts: not a map of service -> times")
    for name, times in restarts.items():
        if not isinstance(times, list) or not all(isinstance(t, int | float) for t in times):
            raise ValueError(f"restarts.{name}: not a list of times")
        if name in views:
            views[name].restarts = [float(t) for t in times if t <= now]
    escalated = facts.get("escalated", [])
    if not isinstance(escalated, list):
        raise ValueError("escalated: not a list of services")
    for name in escalated:
        if name in views:
            views[name].escalated = True
    alerts = facts.get("alerts", [])
    if not isinstance(alerts, list) or not all(isinstance(a, str) for a in alerts):
        raise ValueError("alerts: not a list of lines")
    return halted, alerts
