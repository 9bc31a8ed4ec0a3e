"""Two hosts on one machine: two Linux network namespaces joined by a veth pair, made by the test (as root) and torn
down after it whatever happens.

- :class:`HostPair`: namespaces with unique names per run, the veth pair with 198.18.0.1/30 and 198.18.0.2/30 (the
  benchmarking range, RFC 2544) and loopback up in each; no other interface, no route out.
- :class:`InNs`: a worker thread inside a namespace (setns on that thread only): sockets made there, and the ZeroMQ
  context whose I/O threads it starts (:meth:`InNs.zmq_context`), live in that namespace. The test talks to the
  system from host A's side this way.
- :class:`Supervisord`: a host's supervisord run inside its namespace (``ip netns exec``).
- :class:`Capture`: every frame on one veth end (an AF_PACKET socket in that namespace, no tcpdump), bounded in
  bytes, frames and time; :func:`plaintext` finds given byte strings in each TCP flow's payload stream.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import secrets
import shutil
import signal
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import zmq

ADDR_A, ADDR_B = "198.18.0.1", "198.18.0.2"
PREFIX = 30
CLONE_NEWNET = 0x40000000
ETH_P_ALL = 0x0003
_libc = ctypes.CDLL(None, use_errno=True)


def require_root_and_ip() -> None:
    """Skip (with the reason) where namespaces cannot be made; under CI=true (root there) fail instead."""
    why = ""
    if os.geteuid() != 0:
        why = "needs root (network namespaces and a veth pair)"
    elif shutil.which("ip") is None:
        why = "needs iproute2's `ip`"
    if why:
        if os.environ.get("CI") == "true":
            pytest.fail(f"two-host test cannot run: {why}")
        pytest.skip(why)


def _ip(*args: str) -> None:
    res = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10)
    if res.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {res.stderr.strip()}")


def _enter(ns: str) -> None:
    fd = os.open(f"/var/run/netns/{ns}", os.O_RDONLY)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns into {ns}: {os.strerror(err)}")
    finally:
        os.close(fd)


class InNs:
    """One thread living in namespace `ns`: :meth:`run` calls a function there."""

    def __init__(self, ns: str):
        self.ns = ns
        self._pool = ThreadPoolExecutor(1, thread_name_prefix=f"netns-{ns}", initializer=_enter, initargs=(ns,))

    def run(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return self._pool.submit(fn, *args, **kwargs).result()

    def zmq_context(self) -> zmq.Context:
        """A context whose I/O threads (which make every connection) are started in the namespace."""
        ctx = zmq.Context()
        self.run(lambda: ctx.socket(zmq.PAIR).close())
        return ctx

    def close(self) -> None:
        self._pool.shutdown(wait=True)


@dataclass
class HostPair:
    """Namespaces `a` and `b`, joined by veth `veth_a` (198.18.0.1) <-> `veth_b` (198.18.0.2)."""

    tag: str = field(default_factory=lambda: f"{os.getpid() % 100000}{secrets.token_hex(2)}")
    made: list[str] = field(default_factory=list)

    @property
    def a(self) -> str:
        return f"ot-{self.tag}-a"

    @property
    def b(self) -> str:
        return f"ot-{self.tag}-b"

    @property
    def veth_a(self) -> str:
        return f"ot{self.tag}a"  # interface names: 15 characters at most

    @property
    def veth_b(self) -> str:
        return f"ot{self.tag}b"

    def up(self) -> HostPair:
        for ns in (self.a, self.b):
            _ip("netns", "add", ns)
            self.made.append(ns)
        _ip("link", "add", self.veth_a, "type", "veth", "peer", "name", self.veth_b)
        for ns, dev, addr in ((self.a, self.veth_a, ADDR_A), (self.b, self.veth_b, ADDR_B)):
            _ip("link", "set", dev, "netns", ns)
            _ip("-n", ns, "addr", "add", f"{addr}/{PREFIX}", "dev", dev)
            _ip("-n", ns, "link", "set", dev, "up")
            _ip("-n", ns, "link", "set", "lo", "up")
            routes = subprocess.run(["ip", "-n", ns, "route", "show", "default"], capture_output=True, text=True,
                                    timeout=10).stdout.strip()
            assert not routes, f"{ns} has a route out: {routes}"
        return self

    def exec_prefix(self, ns: str) -> list[str]:
        return ["ip", "netns", "exec", ns]

    def pids(self, ns: str) -> list[int]:
        res = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True, timeout=10)
        return [int(p) for p in res.stdout.split() if p.isdigit()]

    def down(self) -> None:
        """Kill what still runs in the namespaces (only what this test started there), then delete them (the veth
        pair goes with them)."""
        for ns in self.made:
            for sig in (signal.SIGTERM, signal.SIGKILL):
                for pid in self.pids(ns):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, sig)
                deadline = time.monotonic() + 10
                while self.pids(ns) and time.monotonic() < deadline:
                    time.sleep(0.1)
        for ns in reversed(self.made):
            with contextlib.suppress(RuntimeError):
                _ip("netns", "del", ns)
        self.made.clear()


class Supervisord:
    """A host's supervisord inside its namespace, in the foreground (its child: stopped in :meth:`stop`)."""

    def __init__(self, pair: HostPair, ns: str, root: Path, conf: Path, env: dict[str, str], venv: Path):
        self.conf = conf
        self.proc = subprocess.Popen(
            [*pair.exec_prefix(ns), str(venv / "bin" / "supervisord"), "-n", "-c", str(conf)],
            cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


@dataclass
class Captured:
    frames: int = 0
    tcp_bytes: int = 0
    truncated: bool = False  # a bound was reached: the capture stopped early
    flows: dict[tuple, bytearray] = field(default_factory=dict)  # (src, sport, dst, dport) -> payload stream
    other: bytearray = field(default_factory=bytearray)  # payloads of non-TCP frames, as they are


class Capture:
    """Every frame on `ifname` in namespace `ns`, read by its own thread until :meth:`stop` or a bound."""

    def __init__(self, ns: str, ifname: str, max_bytes: int = 64 << 20, max_frames: int = 500_000,
                 max_s: float = 600.0):
        self.ns, self.ifname = ns, ifname
        self.max_bytes, self.max_frames, self.max_s = max_bytes, max_frames, max_s
        self.result = Captured()
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"capture-{ifname}")
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError(f"capture on {ifname} did not start")
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        try:
            _enter(self.ns)
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
            sock.bind((self.ifname, 0))
            sock.settimeout(0.1)
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        deadline = time.monotonic() + self.max_s
        r = self.result
        with sock:
            while not self._stop.is_set():
                if time.monotonic() > deadline or r.frames >= self.max_frames or r.tcp_bytes >= self.max_bytes:
                    r.truncated = True
                    return
                try:
                    frame = sock.recv(1 << 18)
                except TimeoutError:
                    continue
                r.frames += 1
                _take(frame, r)

    def stop(self) -> Captured:
        self._stop.set()
        self._thread.join(10)
        return self.result


def _take(frame: bytes, r: Captured) -> None:
    if len(frame) < 14:
        return
    ethertype = struct.unpack_from("!H", frame, 12)[0]
    ip = frame[14:]
    if ethertype != 0x0800 or len(ip) < 20:
        r.other += ip
        return
    ihl = (ip[0] & 0x0F) * 4
    total = struct.unpack_from("!H", ip, 2)[0] or len(ip)  # 0 with TSO: the frame's length
    proto = ip[9]
    src, dst = socket.inet_ntoa(ip[12:16]), socket.inet_ntoa(ip[16:20])
    body = ip[ihl:total]
    if proto != 6 or len(body) < 20:
        r.other += body
        return
    sport, dport = struct.unpack_from("!HH", body, 0)
    payload = body[(body[12] >> 4) * 4:]
    if payload:
        r.tcp_bytes += len(payload)
        r.flows.setdefault((src, sport, dst, dport), bytearray()).extend(payload)


def plaintext(captured: Captured, needles: Iterable[bytes]) -> dict[bytes, int]:
    """How many flows (and the non-TCP payloads, as one) hold each needle that appears at all."""
    found: dict[bytes, int] = {}
    streams = [*captured.flows.values(), captured.other]
    for needle in needles:
        n = sum(needle in s for s in streams)
        if n:
            found[needle] = n
    return found
