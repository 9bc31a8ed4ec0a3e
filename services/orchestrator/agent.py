"""The host agent: the orchestrator's hand on another host's supervisord (deploy/two-host/).

A program of that host's supervisord (``python -m services.orchestrator.agent --host NAME``). It binds the REP endpoint
``orchestrator.remote_hosts.NAME.agent`` and relays the ops of common/messages/hosts.py to its local supervisord's unix
socket (supervisor.py's :class:`Supervisor`), for the programs the config gives that host only: a request naming any
other program is refused. Why not supervisord's own ``inet_http_server``: its XML-RPC is plaintext HTTP with basic
auth, so the names and states of our programs (and the password) would cross the network readable; these ops are on
the project's wire, CURVE like every socket when ``wire.curve`` is on, and nothing else listens on the host.

It keeps no state and decides nothing: the orchestrator's watchdog decides, the agent carries it out.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from typing import Any

import zmq

from common import bus, config, failure, keys, logs, messages, private
from common.bus import OpError
from common.messages import hosts as host_agent
from services.orchestrator.supervisor import Supervisor, SupervisorUnavailable

log = logging.getLogger("oracle.agent")
KEY_NAME = "agent"  # its CURVE key (wire.keys_dir/agent.key_secret on the host it runs on): the program's name


def secure(cfg: config.Config) -> None:
    """wire.curve: every socket of the agent CURVE, with its own key, as common/runtime.py's main does for a service."""
    keys.secure_process(cfg, KEY_NAME)


class Agent:
    def __init__(self, cfg: config.Config, host: str):
        remote = cfg.orchestrator.remote_hosts.get(host)
        if remote is None:
            known = ", ".join(cfg.orchestrator.remote_hosts) or "none"
            raise config.ConfigError(f"orchestrator.remote_hosts has no host '{host}' (known: {known})")
        self.host = host
        self.programs = set(remote.programs)
        self.endpoint = remote.agent
        self.supervisor = Supervisor(cfg.path(cfg.orchestrator.supervisor_socket),
                                     failures_dir=failure.directory(cfg))  # this host's programs' failures
        self.ctx = zmq.Context()
        self.errors = bus.WireErrors(f"agent-{host}")
        self.rep = bus.Responder(self.ctx, self.endpoint, self.ops(), self.errors)
        self.refused: dict[str, int] = {}  # by reason: answered with an error, counted, logged
        self._stop = False

    def ops(self) -> dict[str, Any]:
        return {
            host_agent.OP_HOST_PROCESSES.name: self._processes,
            host_agent.OP_HOST_SIGNAL.name: self._signal,
            host_agent.OP_HOST_START.name: self._start,
            host_agent.OP_HOST_STOP.name: self._stop_program,
            host_agent.OP_HOST_SHUTDOWN.name: self._shutdown,
            messages.OP_PING.name: lambda _a: messages.Pong(f"agent-{self.host}", 0),
        }

    def _refuse(self, code: str, message: str) -> OpError:
        self.refused[code] = self.refused.get(code, 0) + 1
        logs.event(log, logging.WARNING, "refused", code=code, message=message, count=self.refused[code])
        return OpError(code, message)

    def _program(self, name: str) -> str:
        if name not in self.programs:
            raise self._refuse("unknown_program", f"'{name}' is not a program of host {self.host}")
        return name

    def _supervisord(self, call: Any) -> Any:
        try:
            return call()
        except SupervisorUnavailable as exc:
            raise OpError("supervisor_unavailable", f"host {self.host}: {exc}") from None

    def _processes(self, _args: messages.NoArgs) -> host_agent.HostProcesses:
        procs = self._supervisord(self.supervisor.processes)
        mine = {n: {"statename": p.get("statename", ""), "pid": int(p.get("pid") or 0), "start": p.get("start", 0),
                    **({"failure": p["failure"]} if p.get("failure") else {})}
                for n, p in procs.items() if n in self.programs}
        return host_agent.HostProcesses(self.host, mine, dict(self.refused))

    def _signal(self, args: host_agent.SignalArgs) -> host_agent.HostDone:
        name = self._program(args.program)
        if args.signal not in host_agent.SIGNALS:
            raise self._refuse("bad_signal", f"signal must be one of {', '.join(host_agent.SIGNALS)}")
        self._supervisord(lambda: self.supervisor.signal(name, args.signal))
        logs.event(log, logging.WARNING, "signalled", program=name, signal=args.signal)
        return host_agent.HostDone(self.host, name, f"signalled {args.signal}")

    def _start(self, args: host_agent.ProgramArgs) -> host_agent.HostDone:
        name = self._program(args.program)
        self._supervisord(lambda: self.supervisor.start(name))
        logs.event(log, logging.INFO, "started", program=name)
        return host_agent.HostDone(self.host, name, "started")

    def _stop_program(self, args: host_agent.ProgramArgs) -> host_agent.HostDone:
        name = self._program(args.program)
        self._supervisord(lambda: self.supervisor.stop(name))
        logs.event(log, logging.WARNING, "stopped", program=name)
        return host_agent.HostDone(self.host, name, "stopped")

    def _shutdown(self, _args: messages.NoArgs) -> host_agent.HostDone:
        # supervisord answers at once and stops its programs after (this agent among them, by SIGTERM)
        self._supervisord(self.supervisor.shutdown)
        logs.event(log, logging.WARNING, "shutdown", host=self.host)
        return host_agent.HostDone(self.host, "", "shutting down")

    def request_stop(self, *_a: Any) -> None:
        self._stop = True

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self.request_stop)
        signal.signal(signal.SIGINT, self.request_stop)
        logs.event(log, logging.INFO, "agent up", host=self.host, endpoint=self.endpoint,
                   programs=",".join(sorted(self.programs)))
        while not self._stop:
            if self.rep.sock.poll(200):
                self.rep.serve_ready()
        self.rep.close()
        bus.release(self.ctx)  # CURVE's ZAP authenticator
        self.ctx.term()
        return 0


def main(argv: list[str] | None = None) -> int:
    os.umask(private.PRIVATE_UMASK)
    p = argparse.ArgumentParser(prog="oracle-agent", description="Oracle Trader host agent: another host's supervisord")
    p.add_argument("--host", required=True, help="this host's name in orchestrator.remote_hosts")
    config.add_arguments(p)
    p.add_argument("--log-level", default=os.environ.get("ORACLE_LOG_LEVEL"),
                   choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    args = p.parse_args(argv)
    try:
        cfg = config.load(args.config, args.overlay)
        logs.setup(f"agent-{args.host}", args.log_level or cfg.logging.level, cfg.logging.format)
        secure(cfg)
        agent = Agent(cfg, args.host)
    except config.ConfigError as exc:
        print(f"agent: {exc}", file=sys.stderr)
        return 2
    return agent.run()


if __name__ == "__main__":
    sys.exit(main())
