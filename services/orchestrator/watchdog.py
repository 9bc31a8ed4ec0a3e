"""Watchdog policy (pure): which services to restart, and when restarts escalate to HALTED.

A service that failed permanently (``ServiceView.failure``: it cannot start until a person acts) is neither
restarted nor escalated: it said why once and exited; a restart could only fail the same way. A service whose last
heartbeat said it is stopping is not restarted for the heartbeats that end then: supervisord, a person or the process
itself is stopping it (a process stuck there is killed by supervisord's stopwaitsecs or its own stop timeout). A
restart is a SIGKILL of the process whose heartbeats stopped, never of one started since (``same_process``). A
silent process that is runnable (waiting for a CPU: paper and persistence run at a lower priority, and a machine
busy with the trading path, or anything else, can hold them off for seconds) is starved, not hung: it is given
``STARVED_FACTOR`` heartbeat timeouts (``starved``); a frozen or deadlocked one is stopped or asleep.

The mechanism that restarts (supervisord's XML-RPC) lives in the service shell; this module
only decides, from the registry and the time.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from common.config import Orchestrator
from common.messages import S_STOPPING
from services.orchestrator.registry import ServiceView

FATAL_STATES = ("FATAL",)
STARVED_FACTOR = 4.0  # heartbeat timeouts a silent but runnable process is given before a restart


@dataclass(frozen=True, slots=True)
class Restart:
    service: str
    reason: str


@dataclass(frozen=True, slots=True)
class Escalate:
    service: str
    reason: str


def assess(views: Iterable[ServiceView], now: float, cfg: Orchestrator) -> list[Restart | Escalate]:
    actions: list[Restart | Escalate] = []
    for v in views:
        if v.escalated or v.failure:
            continue
        recent = v.restarts_within(cfg.restart_window_s, now)
        if recent > cfg.restart_limit:
            actions.append(
                Escalate(v.name, f"{recent} restarts in {cfg.restart_window_s:g} s (limit {cfg.restart_limit})")
            )
            continue
        if v.supervisor_state in FATAL_STATES:
            actions.append(Escalate(v.name, "supervisord gave up starting it (FATAL)"))
            continue
        if v.restart_requested_at is not None and now - v.restart_requested_at < 2 * cfg.heartbeat_timeout_s:
            continue  # a restart is under way
        age = v.hb_age(now)
        if age is not None and age > cfg.heartbeat_timeout_s and v.state != S_STOPPING:
            actions.append(Restart(v.name, f"no heartbeat for {age:.1f} s"))
            continue
        hb = v.hb
        running = hb.info.get("step_running_s") if hb is not None else None
        waiting = hb is not None and bool(hb.info.get("waiting_for_operator"))  # a restart cannot help: a person
        if isinstance(running, int | float) and running > cfg.step_timeout_s and not waiting:
            actions.append(Restart(v.name, f"step {hb.info.get('step')} running for {running:.0f} s"))
            continue
        if hb is not None and hb.pending > 0 and now - v.progress_changed_at > cfg.stall_timeout_s:
            stalled = now - v.progress_changed_at
            actions.append(Restart(v.name, f"stalled: {hb.pending} pending, no progress for {stalled:.1f} s"))
    return actions


def same_process(judged_pid: int, supervisor_pid: int) -> bool:
    """Is the process supervisord runs now (`supervisor_pid`, 0: none) the one the watchdog judged (`judged_pid`,
    whose heartbeats it heard)? Not when it was respawned meanwhile (after a crash, a kill or a stop that took long):
    the new process gets its own chance, from its hello."""
    return judged_pid != 0 and supervisor_pid == judged_pid


def starved(silent_s: float, timeout_s: float, runnable: bool) -> bool:
    """Is a process silent for `silent_s` (past the heartbeat timeout) to be left alone as starved of CPU rather than
    restarted as hung? Only while it is runnable, and for at most ``STARVED_FACTOR`` timeouts (a process spinning in
    a loop of its own is runnable too: it is restarted then)."""
    return runnable and silent_s <= STARVED_FACTOR * timeout_s


def next_check(views: Iterable[ServiceView], now: float, cfg: Orchestrator) -> float | None:
    """The earliest time after `now` at which `assess` can decide something else with no new input (a heartbeat or
    supervisord's view): a heartbeat timing out, a restart's grace ending, pending work stalling long enough. The
    loop may sleep until then (plus a millisecond: the timeouts are strict) without detecting anything later.
    None: nothing here depends on the time alone."""
    times: list[float] = []
    for v in views:
        if v.escalated or v.failure:
            continue
        if v.restart_requested_at is not None:
            times.append(v.restart_requested_at + 2 * cfg.heartbeat_timeout_s)
        if v.last_hb is not None:
            times.append(v.last_hb + cfg.heartbeat_timeout_s)
        if v.hb is not None and v.hb.pending > 0:
            times.append(v.progress_changed_at + cfg.stall_timeout_s)
    return min((t for t in times if t > now), default=None)
