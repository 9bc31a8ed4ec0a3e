"""The host agent's ops: what the orchestrator asks another host's supervisord through that host's agent.

The agent (services/orchestrator/agent.py, a program of that host's supervisord) relays these ops to its local
supervisord's unix socket, for the programs the config gives that host (``orchestrator.remote_hosts``) and no
others. supervisord's own XML-RPC is plaintext HTTP; these ops go over the project's wire, so they are CURVE like
every other socket when ``wire.curve`` is on, and are the orchestrator's (and the operator's) only.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from common.messages.registry import op
from common.messages.requests import NAME_CHARS, NoArgs
from common.schema import check

SIGNALS = ("KILL", "TERM", "STOP", "CONT")  # what a caller may send a program (the watchdog sends KILL)


@dataclass(frozen=True, slots=True)
class ProgramArgs:
    program: str = field(metadata=check(max_len=NAME_CHARS))


@dataclass(frozen=True, slots=True)
class SignalArgs:
    program: str = field(metadata=check(max_len=NAME_CHARS))
    signal: str = field(default="KILL", metadata=check(max_len=8))


@dataclass(frozen=True, slots=True)
class HostProcesses:
    """supervisord's view on that host: program -> {statename, pid, ...} (getAllProcessInfo's fields)."""

    host: str
    processes: dict
    refused: dict = field(default_factory=dict)  # the agent's refused requests since its start, by reason


@dataclass(frozen=True, slots=True)
class HostDone:
    host: str
    program: str
    done: str  # what was done: "signalled KILL", "started", "already RUNNING", "stopped", "shutting down"


OP_HOST_PROCESSES = op("host_processes", NoArgs, HostProcesses, "host agent: its supervisord's programs")
OP_HOST_SIGNAL = op("host_signal", SignalArgs, HostDone, "host agent: signal a program (KILL: a hung one)")
OP_HOST_START = op("host_start", ProgramArgs, HostDone, "host agent: start a program (unless running)")
OP_HOST_STOP = op("host_stop", ProgramArgs, HostDone, "host agent: stop a program (a halt's restart storm)")
OP_HOST_SHUTDOWN = op("host_shutdown", NoArgs, HostDone, "host agent: shut its supervisord down (system stop)")
