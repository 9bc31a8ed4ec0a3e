"""System tests run against the real simulator, the default broker.

Every ``Home`` gets its own free simulator ports (so runs in parallel never share a broker) and the bundled CSV;
a connector started directly (without supervisord) gets its home's simulator started first, the way
supervisord's ``sim-broker`` program (priority 50) is started before it.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

import harness

from common import config

CSV = harness.REPO / "data" / "EURUSD_H1_2017.csv"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sim_overlay() -> dict:
    return {"broker": {"sim": {"port": free_port(), "control_port": free_port(), "csv": str(CSV)}}}


def wait_port(port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise AssertionError(f"the simulator did not listen on {port} within {timeout} s")


_original_init = harness.Home.__init__
_original_start = harness.Home.start


def _init(self: harness.Home, root: Path, overlay: dict | None = None) -> None:
    _original_init(self, root, config.merge(sim_overlay(), overlay or {}))


def _start(self: harness.Home, service: str, *args: str):
    if service == "connector" and self.supervisord is None:
        sim = self.procs.get("connector.sim")
        if sim is None or sim.poll() is not None:
            start_sim(self)
    return _original_start(self, service, *args)


def start_sim(home: harness.Home):
    proc = _original_start(home, "connector.sim", "--from-config")
    wait_port(home.config().broker.sim.port)
    return proc


harness.Home.__init__ = _init  # type: ignore[method-assign]
harness.Home.start = _start  # type: ignore[method-assign]
