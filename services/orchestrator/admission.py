"""Whether a ``hello`` may be heard (pure: the facts are arguments). The Responder has already checked that its
caller is the service it names (common/roles.py); here the claim itself: its pid is the caller's and supervisord's
for that program, its epoch (the process's start, wall clock in ns) neither in the future nor before the process
began. A refused hello changes nothing: no new epoch adopted (which would lock the real service out as
``stale_epoch``), no restart counted, no state.

Over ``tcp://`` with CURVE (a service on another host) there is no pid of the caller: its key's name is the check,
and only the epoch's future bound applies (with the hosts' clocks ``CLOCK_SKEW_S`` apart at most).
"""

from __future__ import annotations

from common import messages

CLOCK_SKEW_S = 5.0  # an epoch further ahead of our clock is refused
START_SLACK_S = 2.0  # an epoch this much before the process's start time is still its own (the start's granularity)


def hello_refusal(h: messages.Hello, now_ns: int, caller_pid: int | None, supervisor_pid: int | None,
                  started_ns: int | None) -> str:
    """Why ``h`` is refused ("" when it is not). ``caller_pid``: the sender's pid (ipc), None over tcp;
    ``supervisor_pid``: the pid supervisord reports for the program (0: not running), None when not known (no
    supervisord, another host's program); ``started_ns``: the start time of process ``h.pid``, None when unknown."""
    ahead_s = (h.epoch - now_ns) / 1e9
    if ahead_s > CLOCK_SKEW_S:
        return f"epoch {h.epoch} is {ahead_s:.0f} s ahead of this host's clock"
    if caller_pid is not None and h.pid != caller_pid:
        return f"it says pid {h.pid} but was sent by pid {caller_pid}"
    if supervisor_pid is not None and h.pid != supervisor_pid:
        running = f"as pid {supervisor_pid}" if supervisor_pid else "no process"
        return f"supervisord runs {running} for '{h.service}', not pid {h.pid}"
    if started_ns is not None and h.epoch < started_ns - START_SLACK_S * 1e9:
        return f"epoch {h.epoch} is before process {h.pid} started ({started_ns})"
    return ""
