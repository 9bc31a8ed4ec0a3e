"""supervisord's XML-RPC over its unix socket: the mechanism the watchdog restarts with; another host's supervisord
through that host's agent (agent.py) over the wire; and the router that sends each program's call to its host."""

from __future__ import annotations

import time
import xmlrpc.client
from pathlib import Path
from typing import Any

import zmq
from supervisor.xmlrpc import SupervisorTransport

from common import bus, failure, messages, wire
from common.config import Config
from common.messages import hosts as host_agent
from common.programs import kind_of


class SupervisorUnavailable(RuntimeError):
    pass


def namespec(name: str) -> str:
    """supervisord's name of a program: ``preditor-1``, one of the processes of ``[program:preditor]`` (numprocs),
    is ``preditor:preditor-1``; a single process is its program's name."""
    kind = kind_of(name)
    return name if kind == name else f"{kind}:{name}"


class Supervisor:
    def __init__(self, socket_path: Path, timeout_s: float = 2.0, failures_dir: Path | None = None):
        self.socket_path = socket_path
        self.timeout_s = timeout_s
        self.failures_dir = failures_dir  # where this host's programs record a permanent failure (common/failure.py)

    def _proxy(self):
        if not self.socket_path.exists():
            raise SupervisorUnavailable(f"no supervisord socket at {self.socket_path}")
        transport = SupervisorTransport(None, None, f"unix://{self.socket_path}")
        return xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport).supervisor

    def _call(self, name: str, *args):
        try:
            return getattr(self._proxy(), name)(*args)
        except SupervisorUnavailable:
            raise
        except (OSError, xmlrpc.client.Error) as exc:
            raise SupervisorUnavailable(f"supervisord {name} failed: {exc}") from None

    def processes(self) -> dict[str, dict]:
        """name -> {statename, pid, start, ...}, for every program supervisord runs; with ``failures_dir``, a
        ``failure`` (the cause in words) for a program whose current start recorded a permanent failure."""
        procs = {p["name"]: p for p in self._call("getAllProcessInfo")}
        if self.failures_dir is not None:
            for name, p in procs.items():
                cause = failure.of_start(self.failures_dir, name, float(p.get("start") or 0))
                if cause:
                    p["failure"] = cause
        return procs

    def kill(self, name: str) -> None:
        """SIGKILL a hung process; supervisord's autorestart brings it back (a frozen one ignores TERM)."""
        self.signal(name, "KILL")

    def signal(self, name: str, sig: str) -> None:
        self._call("signalProcess", namespec(name), sig)

    def stop(self, name: str) -> None:
        self._call("stopProcess", namespec(name), False)

    def start(self, name: str) -> None:
        if self.processes().get(name, {}).get("statename") not in ("RUNNING", "STARTING"):
            self._call("startProcess", namespec(name), False)

    def shutdown(self) -> None:
        self._call("shutdown")


class RemoteSupervisor:
    """Another host's supervisord, through its agent's REP: the same calls as :class:`Supervisor`, for the programs
    that host runs. A blocking request with a short timeout, like the local XML-RPC call it stands for."""

    def __init__(self, ctx: zmq.Context, host: str, endpoint: str, programs: list[str], src: str,
                 timeout_ms: int = 1000):
        self.host = host
        self.programs = list(programs)
        self.req = bus.Requester(ctx, endpoint, src, timeout_ms)

    def _call(self, op: str, args: Any) -> Any:
        try:
            return self.req.call(op, args)
        except (bus.RequestTimeout, bus.RequestFailed, wire.WireError) as exc:
            raise SupervisorUnavailable(f"host {self.host} agent: {exc}") from None

    def processes(self) -> dict[str, dict]:
        return dict(self._call(host_agent.OP_HOST_PROCESSES.name, messages.NoArgs()).processes)

    def kill(self, name: str) -> None:
        self._call(host_agent.OP_HOST_SIGNAL.name, host_agent.SignalArgs(name, "KILL"))

    def stop(self, name: str) -> None:
        self._call(host_agent.OP_HOST_STOP.name, host_agent.ProgramArgs(name))

    def start(self, name: str) -> None:
        self._call(host_agent.OP_HOST_START.name, host_agent.ProgramArgs(name))

    def shutdown(self) -> None:
        self._call(host_agent.OP_HOST_SHUTDOWN.name, messages.NoArgs())

    def close(self) -> None:
        self.req.close()


REMOTE_RETRY_S = 5.0  # a host whose agent did not answer is asked again after this long (each try blocks the loop)


class Supervisors:
    """This host's supervisord and every remote host's, as one: each program's call goes to the host that runs it
    (``orchestrator.remote_hosts``; every other program is local). ``processes`` merges what every host answered;
    a host that did not answer is named in ``errors`` (its programs keep their last known state) and is asked again
    only after REMOTE_RETRY_S."""

    def __init__(self, local: Supervisor, remotes: list[RemoteSupervisor]):
        self.local = local
        self.remotes = remotes
        self._by_program = {p: r for r in remotes for p in r.programs}
        self.errors: list[str] = []
        self._retry_at: dict[str, tuple[float, str]] = {}  # host -> (when to ask again, why it failed)

    @classmethod
    def from_config(cls, cfg: Config, ctx: zmq.Context, src: str) -> Supervisors:
        local = Supervisor(cfg.path(cfg.orchestrator.supervisor_socket), failures_dir=failure.directory(cfg))
        remotes = [RemoteSupervisor(ctx, host, r.agent, r.programs, src)
                   for host, r in cfg.orchestrator.remote_hosts.items()]
        return cls(local, remotes)

    def host_of(self, name: str) -> str:
        remote = self._by_program.get(name)
        return remote.host if remote else "local"

    def _for(self, name: str) -> Supervisor | RemoteSupervisor:
        return self._by_program.get(name, self.local)

    def processes(self) -> dict[str, dict]:
        """Every host's programs; raises SupervisorUnavailable only when no host answered."""
        merged: dict[str, dict] = {}
        errors: list[str] = []
        now = time.monotonic()
        for sup in (self.local, *self.remotes):
            host = sup.host if isinstance(sup, RemoteSupervisor) else ""
            retry = self._retry_at.get(host)
            if retry is not None and now < retry[0]:
                errors.append(retry[1])  # not asked again yet: an unreachable host would block every poll
                continue
            try:
                procs = sup.processes()
            except SupervisorUnavailable as exc:
                errors.append(str(exc))
                if host:
                    self._retry_at[host] = (now + REMOTE_RETRY_S, str(exc))
                continue
            self._retry_at.pop(host, None)
            if isinstance(sup, RemoteSupervisor):  # only the programs given to that host
                procs = {n: p for n, p in procs.items() if n in sup.programs}
            else:  # the local supervisord does not speak for a remote host's programs
                procs = {n: p for n, p in procs.items() if n not in self._by_program}
            merged.update(procs)
        self.errors = errors
        if errors and not merged:
            raise SupervisorUnavailable("; ".join(errors))
        return merged

    def pid_of(self, name: str) -> int | None:
        """The pid program ``name`` runs as on its host (0: not running); None when that host has no such program."""
        info = self._for(name).processes().get(name)
        return None if info is None else int(info.get("pid") or 0)

    def kill(self, name: str) -> None:
        self._for(name).kill(name)

    def stop(self, name: str) -> None:
        self._for(name).stop(name)

    def start(self, name: str) -> None:
        self._for(name).start(name)

    def shutdown(self) -> None:
        """The remote hosts first (their agents answer, then their supervisord stops), this host's last: it runs
        the orchestrator."""
        self.errors = []
        for remote in self.remotes:
            try:
                remote.shutdown()
            except SupervisorUnavailable as exc:  # that host goes on alone; this one still stops
                self.errors.append(str(exc))
        self.local.shutdown()

    def close(self) -> None:
        for remote in self.remotes:
            remote.close()
