"""supervisord's XML-RPC over its unix socket: the mechanism the watchdog restarts with."""

from __future__ import annotations

import xmlrpc.client
from pathlib import Path

from supervisor.xmlrpc import SupervisorTransport


class SupervisorUnavailable(RuntimeError):
    pass


class Supervisor:
    def __init__(self, socket_path: Path, timeout_s: float = 2.0):
        self.socket_path = socket_path
        self.timeout_s = timeout_s

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
        """name -> {state, pid, start}, for every program supervisord runs."""
        return {p["name"]: p for p in self._call("getAllProcessInfo")}

    def pid_of(self, name: str) -> int | None:
        """The pid supervisord runs program ``name`` as (0: not running); None when it has no such program."""
        try:
            return int(self._proxy().getProcessInfo(name).get("pid") or 0)
        except xmlrpc.client.Fault:  # BAD_NAME
            return None
        except (OSError, xmlrpc.client.Error) as exc:
            raise SupervisorUnavailable(f"supervisord getProcessInfo failed: {exc}") from None

    def kill(self, name: str) -> None:
        """SIGKILL a hung process; supervisord's autorestart brings it back (a frozen one ignores TERM)."""
        self._call("signalProcess", name, "KILL")

    def stop(self, name: str) -> None:
        self._call("stopProcess", name, False)

    def start(self, name: str) -> None:
        if self.processes().get(name, {}).get("statename") not in ("RUNNING", "STARTING"):
            self._call("startProcess", name, False)

    def shutdown(self) -> None:
        self._call("shutdown")
