"""Who sent a request: :class:`Peer` (role, name, pid, uid, key name), read from the request's first frame.

- CURVE on (``wire.curve``): the ZAP handler answered the handshake with the key's name as the frame's
  ``User-Id`` ("executor", "preditor-1", "operator"); the name gives the role (common/roles.py).
- ``ipc://`` (with or without CURVE): the frame's ``Peer-Address`` ends with ``:<uid>:<gid>:<pid>`` of the process
  that connected (the kernel's SO_PEERCRED). Without CURVE the role is what that process is: a process of another
  user is no one (refused everything: ZMQ_IPC_FILTER_UID's effect, answered rather than dropped); one of ours is a
  service when supervisord runs it as one (``SUPERVISOR_PROCESS_NAME`` in its environment) or it runs as
  ``python -m services.<name>``; any other process of ours is the operator (``oracle ctl``, a person's script).
  An auxiliary program (``web``) is recognised the same way and has its own role (common/roles.py READS).
- ``tcp://`` without CURVE is loopback only (common/config.py refuses anything else): the operator, as before roles
  existed. The same for ``inproc://`` (this process).

On ``ipc://`` without keys this tells the system's own processes apart, against a mistake or a tool run against the
wrong socket; it is no wall against a process of the same user (which may set any environment). CURVE keys are.

The parsing is pure (``parse_ipc_address``, ``process_name``, ``identify``); :class:`PeerCache` reads the frame's
properties and /proc, and keeps what it found per peer address for a while (a /proc read is ~50 us; a request's
check is one property read and a dict lookup).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import zmq

from common import roles

PROCESS_ENV = b"SUPERVISOR_PROCESS_NAME="  # supervisord sets it in each program's environment
PEER_TTL_S = 5.0  # a peer address's identity is read again this long after (a pid may be reused)
MAX_PEERS = 1024  # cached identities at most (the cache is emptied past it)
NAME_CHARS = 64  # a process's claimed name is clipped to this in messages and counters


@dataclass(frozen=True, slots=True)
class Peer:
    """A request's caller: ``role`` (None: no one we know: refused everything), ``name`` (the key's, the
    supervisord program's, ``operator``, or ``uid N`` for another user), ``pid``/``uid`` on ipc (None elsewhere),
    ``key`` the CURVE key's name ("" without CURVE)."""

    role: str | None
    name: str
    pid: int | None = None
    uid: int | None = None
    key: str = ""

    def __str__(self) -> str:
        return self.name if self.pid is None else f"{self.name} (pid {self.pid})"


OPERATOR = Peer(roles.OPERATOR, roles.OPERATOR)


def parse_ipc_address(address: str) -> tuple[int, int, int] | None:
    """(uid, gid, pid) from an ipc peer's ``Peer-Address`` (``localhost:0:0:5202``); None when it is not one."""
    parts = address.rsplit(":", 3)
    if len(parts) != 4 or not all(p.isdigit() for p in parts[1:]):
        return None
    return int(parts[1]), int(parts[2]), int(parts[3])


def process_name(environ: bytes, cmdline: bytes) -> str | None:
    """The service a process says it is: its supervisord program name, else ``X`` of ``python -m services.X``
    (X a service, not a tool under it such as ``services.connector.sim``); None when neither."""
    for entry in environ.split(b"\0"):
        if entry.startswith(PROCESS_ENV):
            return entry[len(PROCESS_ENV):].decode("utf-8", "replace")[:NAME_CHARS]
    args = cmdline.split(b"\0")
    for i, arg in enumerate(args[:-1]):
        if arg == b"-m":
            module = args[i + 1].decode("utf-8", "replace")
            package, _, name = module.partition(".")
            if package == "services" and (name in roles.SERVICES or name in roles.AUXILIARY):
                return name
            return None
    return None


def identify(uid: int, pid: int, own_uid: int, name: str | None, key: str = "") -> Peer:
    """The caller on ipc: by its key's name when CURVE gave one, else by its user and what the process is."""
    if key:
        return Peer(roles.role_of(key), key, pid, uid, key)
    if uid != own_uid:
        return Peer(None, f"uid {uid}", pid, uid)
    role = roles.role_of(name) if name else None
    if role is None or role == roles.OPERATOR:  # a process of ours that is no service (or calls itself operator)
        return Peer(roles.OPERATOR, roles.OPERATOR, pid, uid)
    return Peer(role, name or role, pid, uid)


def from_key(key: str) -> Peer:
    """The caller over tcp with CURVE: its key's name only (no pid across hosts)."""
    return Peer(roles.role_of(key), key, key=key)


def read_process(pid: int) -> tuple[bytes, bytes]:
    """(environ, cmdline) of a process from /proc; empty when they cannot be read (it is gone, or /proc is hidden)."""
    out = []
    for part in ("environ", "cmdline"):
        try:
            with open(f"/proc/{pid}/{part}", "rb") as f:
                out.append(f.read(256 * 1024))
        except OSError:
            out.append(b"")
    return out[0], out[1]


class PeerCache:
    """The identities of a socket's callers, read from each request's first frame (``frame_peer``)."""

    def __init__(self, endpoint: str, own_uid: int | None = None):
        self.ipc = endpoint.startswith("ipc://")
        self.own_uid = os.geteuid() if own_uid is None else own_uid
        self.curve: bool | None = None  # known at the first request (the socket's options may be set after bind)
        self.peers: dict[tuple[str, str], tuple[Peer, float]] = {}

    def frame_peer(self, sock: zmq.Socket, frame: zmq.Frame) -> Peer:
        if self.curve is None:
            self.curve = sock.get(zmq.MECHANISM) == zmq.CURVE
        if not self.ipc and not self.curve:
            return OPERATOR
        key = _prop(frame, "User-Id") if self.curve else ""
        address = _prop(frame, "Peer-Address") if self.ipc else ""
        now = time.monotonic()
        cached = self.peers.get((key, address))
        if cached is not None and now < cached[1]:
            return cached[0]
        peer = self._identify(key, address)
        if len(self.peers) >= MAX_PEERS:
            self.peers.clear()
        self.peers[(key, address)] = (peer, now + PEER_TTL_S)
        return peer

    def _identify(self, key: str, address: str) -> Peer:
        if not self.ipc:
            return from_key(key) if key else Peer(None, "no key")
        creds = parse_ipc_address(address)
        if creds is None:  # no credentials on an ipc peer: nothing to go by
            return from_key(key) if key else Peer(None, "unknown ipc peer")
        uid, _gid, pid = creds
        if key:
            return identify(uid, pid, self.own_uid, None, key)
        if uid != self.own_uid:
            return identify(uid, pid, self.own_uid, None)
        return identify(uid, pid, self.own_uid, process_name(*read_process(pid)))


def _prop(frame: zmq.Frame, name: str) -> str:
    try:
        value = frame.get(name)
    except zmq.ZMQError:
        return ""
    return value if isinstance(value, str) else ""
