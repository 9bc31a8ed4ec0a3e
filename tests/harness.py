"""Real processes for system tests: a throwaway ORACLE_HOME, services started as OS processes
(directly or by the real supervisord with the repository's deploy/supervisord.conf), and
requests over the real sockets."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
import zmq

from common import bus, config, messages
from common.programs import kind_of

REPO = Path(__file__).resolve().parent.parent
VENV = Path(sys.prefix)
CSV = REPO / "data" / "EURUSD_H1_2017.csv"

# Faster clocks than production so tests are short; the mechanisms are the same.
TEST_OVERLAY = {
    "runtime": {"heartbeat_interval_s": 0.5, "hello_interval_s": 0.1, "request_timeout_ms": 1000},
    "orchestrator": {"heartbeat_timeout_s": 3.0, "restart_window_s": 60.0, "restart_limit": 3, "step_timeout_s": 10},
}


# The test servers' TCP ports (the simulator, its control port, the dashboard, CURVE endpoints) come from below the
# kernel's ephemeral range, each pytest-xdist worker walking a slice of its own. A port bind(0) gave and released is
# the kernel's to give again, to another worker's bind(0) or to a client socket, before the server that was to have
# it binds it: a soak's simulator once found its port taken by another worker's dashboard, and its connector talked
# TLS to an HTTP server.
PORTS_LOW = 10_000


def _port_slice() -> range:
    try:
        ephemeral_low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        ephemeral_low = 32_768
    high = min(ephemeral_low, 32_768)
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    index = int(worker[2:]) if worker[2:].isdigit() else 0
    workers = max(int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1), index + 1)
    size = (high - PORTS_LOW) // workers
    if size < 100:
        raise RuntimeError(f"no room for test ports below the ephemeral range ({ephemeral_low}) for {workers} workers")
    return range(PORTS_LOW + index * size, PORTS_LOW + (index + 1) * size)


_ports: list[int] = []  # [the next port to try], from a random start: a second session beside starts elsewhere


def free_port() -> int:
    """A TCP port of this worker's slice that nothing is bound to now, never handed out twice by this process."""
    ports = _port_slice()
    if not _ports:
        _ports.append(ports.start + int.from_bytes(os.urandom(2), "big") % len(ports))
    for _ in range(len(ports)):
        port = _ports[0]
        _ports[0] = ports.start + (port + 1 - ports.start) % len(ports)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue  # bound by someone else: the next one
            return port
    raise RuntimeError(f"no free TCP port in {ports.start}-{ports.stop - 1}")


def wait_port(port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise AssertionError(f"the simulator did not listen on {port} within {timeout} s")


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
        except (bus.RequestTimeout, bus.RequestFailed) as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}; last: {last!r}")


def status_map(report: messages.ProcessStatus) -> dict:
    """A status report (decoded by the ``status`` op's record, so already validated) as the plain map on the wire."""
    if not isinstance(report, messages.ProcessStatus):
        raise TypeError(f"not a status report: {type(report).__name__}")
    return messages.to_wire(report)


class Home:
    """A directory laid out like the repository root, with its own var/ and config overlay, and its own
    simulator (the default broker) on free ports, replaying the bundled CSV."""

    def __init__(self, root: Path, overlay: dict | None = None):
        self.root = root
        (root / "config").mkdir(parents=True, exist_ok=True)
        (root / "config" / "default.yaml").symlink_to(REPO / "config" / "default.yaml")
        if (REPO / "config" / "executor_symbols.json").exists():
            shutil.copy(REPO / "config" / "executor_symbols.json", root / "config" / "executor_symbols.json")
        (root / "models").symlink_to(REPO / "models")
        (root / "deploy").mkdir()
        shutil.copy(REPO / "deploy" / "supervisord.conf", root / "deploy" / "supervisord.conf")
        (root / ".venv").symlink_to(VENV)
        (root / "var" / "log").mkdir(parents=True)
        sim = {"broker": {"sim": {"port": free_port(), "control_port": free_port(), "csv": str(CSV)}},
               "web": {"port": free_port()}}  # the dashboard supervisord starts too
        self.write_overlay(config.merge(config.merge(TEST_OVERLAY, sim), overlay or {}))
        self.procs: dict[str, subprocess.Popen] = {}
        self.supervisord: subprocess.Popen | None = None
        self.ctx = zmq.Context.instance()

    def write_overlay(self, overlay: dict) -> None:
        (self.root / "config" / "local.yaml").write_text(yaml.safe_dump(overlay))

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ORACLE_")}
        env["ORACLE_HOME"] = str(self.root)
        env["PYTHONUNBUFFERED"] = "1"
        env["PYTHONPATH"] = str(REPO)  # the processes run this checkout's code, whatever .venv points at
        return env

    def config(self) -> config.Config:
        return config.load(env=self.env)

    def log(self, name: str) -> str:
        path = self.root / "var" / "log" / f"{name}.log"
        return path.read_text() if path.exists() else ""

    # ---- processes started directly ----------------------------------------------------------
    def start(self, service: str, *args: str, program: str | None = None) -> subprocess.Popen:
        """Start ``python -m services.<service>``; a connector of the simulator gets it started first (as
        supervisord's sim-broker program, priority 50, is). ``program``: its name here (log, ``procs``, ``kill``)
        when it is not the service's, e.g. a preditor shard ``preditor-1`` (started with ``--shard 1``)."""
        if service == "connector" and self.supervisord is None and self.config().broker.type == "sim":
            sim = self.procs.get("connector.sim")
            if sim is None or sim.poll() is not None:
                self.start_sim()
        return self._spawn(service, *args, program=program)

    def start_sim(self) -> subprocess.Popen:
        proc = self._spawn("connector.sim", "--from-config")
        wait_port(self.config().broker.sim.port)
        return proc

    def _spawn(self, service: str, *args: str, program: str | None = None) -> subprocess.Popen:
        program = program or service
        out = open(self.root / "var" / "log" / f"{program}.log", "ab")  # noqa: SIM115 - owned by the process
        proc = subprocess.Popen(
            [sys.executable, "-m", f"services.{service}", *args],
            cwd=self.root,
            env=self.env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        out.close()
        self.procs[program] = proc
        return proc

    def kill(self, service: str, sig: int = signal.SIGKILL) -> None:
        proc = self.procs[service]
        proc.send_signal(sig)
        if sig in (signal.SIGKILL, signal.SIGTERM):
            proc.wait(10)

    # ---- supervisord -------------------------------------------------------------------------
    def start_supervisord(self) -> None:
        self.supervisord = subprocess.Popen(
            [str(VENV / "bin" / "supervisord"), "-n", "-c", str(self.root / "deploy" / "supervisord.conf")],
            cwd=self.root,
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def supervisorctl(self, *args: str) -> str:
        res = subprocess.run(
            [str(VENV / "bin" / "supervisorctl"), "-c", str(self.root / "deploy" / "supervisord.conf"), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=30,
        )
        return res.stdout

    def pid_of(self, program: str) -> int:
        kind = kind_of(program)  # a numbered program (preditor-1) is one of its kind's processes (numprocs)
        out = self.supervisorctl("pid", program if kind == program else f"{kind}:{program}").strip()
        return int(out) if out.isdigit() else 0

    def oracle(self, *args: str, timeout: float = 30, stdin: str | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([str(VENV / "bin" / "oracle"), *args], env=self.env, capture_output=True, text=True,
                              timeout=timeout, input=stdin if stdin is not None else "")

    # ---- requests over the real sockets --------------------------------------------------------
    def request(self, service: str, op: str, args: Any = None, timeout_ms: int = 1500) -> Any:
        cfg = self.config()
        req = bus.Requester(self.ctx, cfg.endpoint(service, "rep"), "test", timeout_ms)
        try:
            return req.call(op, args if args is not None else messages.NoArgs())
        finally:
            req.close()

    def status_of(self, service: str, timeout_ms: int = 1500) -> dict:
        """A service's status report as a plain map (tests read its keys)."""
        return status_map(self.request(service, "status", timeout_ms=timeout_ms))

    def status(self) -> dict:
        """The orchestrator's status report as a plain map."""
        return self.status_of("orchestrator")

    def system_state(self) -> str:
        return self.status()["system"]

    def wait_state(self, state: str, timeout: float = 20) -> dict:
        return wait_for(
            lambda: (lambda s: s if s["system"] == state else None)(self.status()), timeout, f"system {state}"
        )

    def close(self) -> None:
        if self.supervisord is not None and self.supervisord.poll() is None:
            self.supervisord.terminate()
            try:
                self.supervisord.wait(30)
            except subprocess.TimeoutExpired:
                self.supervisord.kill()
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
