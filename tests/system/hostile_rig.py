"""The hostile suite's rig: the whole system under the real supervisord (chaos_rig.Replay, booted to RUNNING), and
every endpoint of every service attacked in turn; what tests/system/test_hostile_suite.py drives and checks, and
what ``python -m tests.system.hostile_rig`` runs by hand (the full form by default).

Request endpoints (each service's ``rep``: a REP, or a ROUTER for the connector and persistence): one DEALER
pipelines the seeded corpus of hostile_corpus.py (every frame one the wire's decoder refuses), each message behind
the REQ envelope's empty delimiter, at most WINDOW in flight (a REP/ROUTER drops a reply it cannot queue: the window
keeps every reply deliverable); then the 20 and 50 MB frames, the amplification frame and the dense frame of
test_hostile_limits.py. A ROUTER endpoint also gets messages without the delimiter: not a REQ peer, nobody to
answer, so the service drops and counts them (``bad_frames``). A REP endpoint does not: libzmq's REP discards such a
message before the service sees it. Accounting per endpoint: every message sent is answered (an ``ok: false`` reply,
at most MAX_REPLY_BYTES) or dropped, the drops are exactly the no-delimiter messages, and the service's own
``wire_errors`` counters (its status) grew by exactly what was sent, kind by kind: every frame answered or dropped,
and counted. Then "other": well-formed requests of the ops that only read (READ_ONLY_OPS), each service answering
those it does not serve with ``unknown_op``; checked answered, never a ``handler_error``; shown, not checked, how
many were counted (none: common/bus.py's Responder counts what fails to decode only). Then "churn": a tenth of the
corpus again, a fresh REQ socket per frame closed before its reply (counted all the same); and "raw": connections
below ZeroMQ (RAW: bytes that are not ZMTP, a greeting then garbage, a frame header of 1 TB or just over MAXMSGSIZE,
a 1 TB command, a CURVE greeting to a NULL socket, a PUB's READY to a REP), every one but the non-ZMTP bytes closed
by ZeroMQ at once, unread (those are held until ZeroMQ's handshake interval, 30 s, and closed here after 2 s).

Publish endpoints: a subscriber can only send subscription messages up a PUB (libzmq handles them: they never
reach the service's code), so an XSUB sends SUBSCRIPTIONS junk subscription and unsubscription messages (random
prefixes up to SUB_PREFIX_BYTES, the length of the system's topics), messages that are not subscriptions, empty and
multipart ones, then disconnects; checked: the service stays up and its RSS bounded. ``long_subscriptions=True``
(on demand) sends the same count with prefixes up to 1 KB: libzmq keeps every subscription in a trie in the PUB
(measured: +85-90 MB per service while the subscriber is connected, for 3.4 MB sent; freed when it disconnects,
and given back by the runtime's trim), a growth that only the publisher's socket can bound (common/bus.py).

Per service: RSS (psutil, on the pid supervisord reports) before its attacks, after each (the transient), and at
the end, past the heartbeat that gives freed memory back (common/runtime.py): what stays; its pid unchanged
and the orchestrator's restart count unchanged; at the end the system is RUNNING and a bar closed at the simulator
goes bar -> signal -> ack -> paper, settled and durable (Replay.step).
"""

from __future__ import annotations

import os
import select
import socket
import struct
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import msgpack
import psutil
import zmq

if __package__ in (None, "") or __package__ == "tests.system":  # run as `python -m tests.system.hostile_rig`
    _TESTS = str(Path(__file__).resolve().parent.parent)
    if _TESTS not in sys.path:
        sys.path.insert(0, _TESTS)

from harness import wait_for  # noqa: E402
from system import hostile_corpus  # noqa: E402
from system.chaos_rig import Replay  # noqa: E402

from common import config, wire  # noqa: E402

MB = 1_000_000
WINDOW = 64  # messages in flight on one DEALER
MAX_REPLY_BYTES = 2048  # an error reply: a clipped message, never the peer's frame echoed
QUIET_S = 10.0  # no reply for this long with replies owed: the rest are lost
SUBSCRIPTIONS_PER_FRAME = 1  # one subscription message per corpus frame
SUB_PREFIX_BYTES = 32
LONG_PREFIX_BYTES = 1024
SERVICES = config.SERVICES
# well-formed requests of ops that only read, sent to every service: those it does not serve are answered
# `unknown_op` ("other" figures; not counted by common/bus.py's Responder today, so not part of the check)
READ_ONLY_OPS = ["ping", "status", "history", "symbol_info", "account", "positions", "last_signals",
                 "signals_since", "virtual_positions", "query"]
ROUTERS = ("connector", "persistence")  # concurrent_requests: a ROUTER; the others bind a REP


@dataclass
class Figures:
    """What one endpoint's attack did."""

    service: str
    endpoint: str
    kind: str  # rep | router | pub
    sent: int = 0
    bytes_sent: int = 0
    answered: int = 0
    dropped: int = 0
    expected_drops: int = 0
    counted: dict[str, int] = field(default_factory=dict)  # the service's wire_errors growth, by kind
    replies: Counter = field(default_factory=Counter)  # the answered error codes
    bad_replies: list[str] = field(default_factory=list)  # replies that are not a small ok: false map
    max_reply: int = 0
    elapsed_s: float = 0.0
    rss_after: int = 0  # the service's RSS after this attack

    def line(self) -> str:
        return f"{self._line()}  RSS {self.rss_after / MB:6.1f} MB"

    def _line(self) -> str:
        counted = sum(self.counted.values())
        if self.kind == "other":
            codes = ", ".join(f"{n} {code}" for code, n in sorted(self.replies.items()))
            return (f"{self.service:12s} other  {self.sent:7,d} well-formed read-only requests, answered: {codes}; "
                    f"{counted:,d} counted  {self.elapsed_s:6.1f} s")
        if self.kind == "churn":
            return (f"{self.service:12s} churn  {self.sent:7,d} sent {self.bytes_sent / MB:8.1f} MB  a fresh REQ each, "
                    f"gone before the reply          {counted:7,d} counted  {self.elapsed_s:6.1f} s")
        if self.kind == "raw":
            held = self.sent - self.dropped
            return (f"{self.service:12s} raw    {self.sent:7,d} connections (ZMTP junk), {self.dropped:,d} closed by "
                    f"ZeroMQ at once, {held:,d} held to its handshake timeout                  {self.elapsed_s:6.1f} s")
        if self.kind == "pub":
            return (f"{self.service:12s} pub    {self.sent:7,d} sent {self.bytes_sent / MB:8.1f} MB  handled by ZeroMQ "
                    f"(no reply owed), RSS while connected    {self.elapsed_s:6.1f} s")
        return (f"{self.service:12s} {self.kind:6s} {self.sent:7,d} sent {self.bytes_sent / MB:8.1f} MB  "
                f"{self.answered:7,d} answered {self.dropped:5,d} dropped {counted:7,d} counted  "
                f"reply <= {self.max_reply:4d} B  {self.elapsed_s:6.1f} s")


@dataclass
class ServiceFigures:
    service: str
    pid_before: int
    pid_after: int = 0
    rss_before: int = 0
    rss_after: int = 0
    restarts_before: int = 0
    restarts_after: int = 0
    done_uptime: float = 0.0  # its uptime when its attacks ended

    @property
    def growth(self) -> int:
        return self.rss_after - self.rss_before

    def line(self) -> str:
        return (f"{self.service:12s} RSS {self.rss_before / MB:6.1f} -> {self.rss_after / MB:6.1f} MB "
                f"({self.growth / MB:+5.1f})  pid {self.pid_before} -> {self.pid_after}  restarts "
                f"{self.restarts_before} -> {self.restarts_after}")


@dataclass
class Report:
    frames: int
    seed: int
    endpoints: list[Figures] = field(default_factory=list)
    services: dict[str, ServiceFigures] = field(default_factory=dict)
    settled_bar: int = 0
    system_after: str = ""
    elapsed_s: float = 0.0

    def text(self) -> str:
        lines = [f"hostile suite: {self.frames:,d} corpus frames per request endpoint (+ 4 frames of 2-50 MB), seed "
                 f"{self.seed}, {self.elapsed_s:.0f} s"]
        lines += [f.line() for f in self.endpoints]
        lines += [s.line() for s in self.services.values()]
        lines.append(f"after: system {self.system_after}, bar {self.settled_bar} settled (bar -> signal -> ack)")
        return "\n".join(lines)


def big_frames() -> list[hostile_corpus.Frame]:
    """The frames of test_hostile_limits.py: 20 and 50 MB of junk, the amplification ping (20 M empty lists in
    20 MB) and a 2 MB frame dense with empty maps."""
    def head(op: str, req_id: str) -> bytes:
        return b"\x84" + b"".join(msgpack.packb(x) for x in ("v", 1, "op", op, "id", req_id, "args"))

    n = 20 * MB
    return [
        hostile_corpus.Frame("big_20mb", (head("ping", "j-1") + msgpack.packb(b"\x00" * (20 * MB)),)),
        hostile_corpus.Frame("big_50mb", (head("ping", "j-2") + msgpack.packb("s" * (50 * MB)),)),
        hostile_corpus.Frame("amplification", (head("ping", "amp-1") + b"\xdd" + n.to_bytes(4, "big") + b"\x90" * n,)),
        hostile_corpus.Frame("dense", (msgpack.packb({"v": 1, "op": "ping", "id": "d-1",
                                                      "args": [[{}] * 60_000] * 33}),)),
    ]


def _reply_of(frames: list[bytes], figures: Figures) -> None:
    figures.answered += 1
    body = frames[-1]
    figures.max_reply = max(figures.max_reply, len(body))
    try:
        m = msgpack.unpackb(body)
        if figures.kind == "other" and m["ok"] is True:  # a well-formed request served
            figures.replies["ok"] += 1
            return
        ok, code = m["ok"], m["error"]["code"]
    except Exception as exc:  # anything but an error reply map is a finding, recorded
        figures.bad_replies.append(f"undecodable reply ({type(exc).__name__}): {body[:80]!r}")
        return
    if ok is not False or len(body) > MAX_REPLY_BYTES or frames[:-1] != [b""]:
        figures.bad_replies.append(f"reply {body[:120]!r} ({len(body)} B) after {frames[:-1]!r}")
    figures.replies[code] += 1


def attack_requests(ctx: zmq.Context, figures: Figures, frames: list[hostile_corpus.Frame]) -> None:
    """Pipeline ``frames`` to a REP/ROUTER endpoint on one DEALER, at most WINDOW replies owed; count the replies."""
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVHWM, 0)
    sock.connect(figures.endpoint)
    t0 = time.monotonic()
    owed = 0
    last_reply = time.monotonic()

    def take(block_ms: int) -> bool:
        nonlocal owed, last_reply
        if not sock.poll(block_ms, zmq.POLLIN):
            return False
        _reply_of(sock.recv_multipart(), figures)
        owed -= 1
        last_reply = time.monotonic()
        return True

    try:
        for frame in frames:
            while owed >= WINDOW:
                if not take(1000) and time.monotonic() - last_reply > QUIET_S:
                    break  # replies lost: counted below as sent - answered
            no_reply = frame.kind == hostile_corpus.NO_DELIMITER
            sock.send_multipart(list(frame.parts) if no_reply else [b"", *frame.parts])
            figures.sent += 1
            figures.bytes_sent += frame.size
            if no_reply:
                figures.expected_drops += 1
            else:
                owed += 1
            while take(0):  # read what is there, keep the pipe short
                pass
        while owed > 0 and (take(200) or time.monotonic() - last_reply < QUIET_S):
            pass
    finally:
        sock.close()
    figures.dropped = figures.sent - figures.answered
    figures.elapsed_s = time.monotonic() - t0


def attack_churn(ctx: zmq.Context, figures: Figures, frames: list[hostile_corpus.Frame]) -> None:
    """A fresh REQ socket per frame, closed at once without reading its reply (the service answers a peer that is
    gone: ZeroMQ drops that reply); the service must still count every frame."""
    t0 = time.monotonic()
    for frame in frames:
        sock = ctx.socket(zmq.REQ)
        sock.setsockopt(zmq.LINGER, 5000)  # the request leaves before the socket is gone
        sock.connect(figures.endpoint)
        sock.send_multipart(list(frame.parts))
        sock.close()
        figures.sent += 1
        figures.bytes_sent += frame.size
    figures.elapsed_s = time.monotonic() - t0


def junk_subscriptions(seed: int, n: int, prefix_bytes: int) -> list[list[bytes]]:
    """Messages an XSUB sends up to a PUB: (un)subscriptions of random prefixes, non-subscription messages, empty
    and multipart ones."""
    import random

    rng = random.Random(seed)
    out = []
    for i in range(n):
        prefix = rng.randbytes(rng.randrange(0, prefix_bytes + 1))
        out.append([
            [b"\x01" + prefix], [b"\x00" + prefix], [b"\x00" + rng.randbytes(8)],
            [rng.choice([b"\x02", b"\xff", b"hb."]) + prefix], [b""], [b"\x01" + prefix, b"more", b""],
        ][i % 6])
    return out


def attack_publisher(ctx: zmq.Context, figures: Figures, messages: list[list[bytes]], read: Callable[[], None]) -> None:
    """Send ``messages`` up a PUB on one XSUB, stay connected until ``read()`` returns (the PUB reads what a
    subscriber sent only when it sends itself), then disconnect."""
    sock = ctx.socket(zmq.XSUB)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.SNDHWM, 0)
    sock.connect(figures.endpoint)
    t0 = time.monotonic()
    try:
        for parts in messages:
            sock.send_multipart(parts)
            figures.sent += 1
            figures.bytes_sent += sum(map(len, parts))
        read()
    finally:
        sock.close()
    figures.elapsed_s = time.monotonic() - t0


# ---- below the wire: raw connections to a request endpoint (ZMTP, https://rfc.zeromq.org/spec/23/) -------------
def _greeting(mechanism: bytes = b"NULL") -> bytes:
    return b"\xff" + b"\x00" * 8 + b"\x7f" + b"\x03\x00" + mechanism.ljust(20, b"\x00") + b"\x00" * 32


def _ready(socket_type: bytes = b"DEALER") -> bytes:
    body = b"\x05READY" + b"\x0bSocket-Type" + struct.pack(">I", len(socket_type)) + socket_type
    return b"\x04" + bytes([len(body)]) + body


# what a raw connection sends; all but "not_zmtp" are refused by ZeroMQ at once (it closes the connection unread:
# a frame over MAXMSGSIZE, a command of 1 TB, a mechanism or socket type it does not speak). "not_zmtp" is held
# until ZeroMQ's handshake interval (30 s), then closed.
RAW = {
    "not_zmtp": b"GET / HTTP/1.1\r\n\r\n",
    "greeting_then_garbage": _greeting() + b"\x13\x37" * 50,
    "frame_of_1_tb": _greeting() + _ready() + b"\x02" + struct.pack(">Q", 1 << 40) + b"x" * 100,
    "frame_of_65_mb": _greeting() + _ready() + b"\x02" + struct.pack(">Q", wire.MAX_MESSAGE_BYTES + MB) + b"x" * 100,
    "command_of_1_tb": _greeting() + b"\x06" + struct.pack(">Q", 1 << 40) + b"x" * 100,
    "curve_to_null": _greeting(b"CURVE"),
    "pub_to_rep": _greeting() + _ready(b"PUB"),
}
HELD_OPEN = ("not_zmtp",)


def attack_raw(figures: Figures, connections: int, wait_s: float = 3.0) -> dict[str, int]:
    """``connections`` raw connections to an ipc or tcp endpoint, the RAW kinds in turn, each sending its bytes;
    how many of each kind the service closed within ``wait_s`` (the rest are closed here)."""
    scheme, _, address = figures.endpoint.partition("://")
    socks: list[tuple[str, socket.socket]] = []
    t0 = time.monotonic()
    kinds = list(RAW)
    closed: Counter = Counter()
    try:
        for i in range(connections):
            kind = kinds[i % len(kinds)]
            if scheme == "ipc":
                s = socket.socket(socket.AF_UNIX)
                s.connect(address)
            else:
                host, _, port = address.rpartition(":")
                s = socket.create_connection((host.strip("[]"), int(port)))
            s.sendall(RAW[kind])
            s.setblocking(False)
            socks.append((kind, s))
            figures.sent += 1
            figures.bytes_sent += len(RAW[kind])
        open_ = {s: kind for kind, s in socks}
        deadline = time.monotonic() + wait_s
        # ZeroMQ closes every kind but HELD_OPEN at once; those are held to its handshake interval, not waited for
        while any(k not in HELD_OPEN for k in open_.values()) and time.monotonic() < deadline:
            readable, _, _ = select.select(list(open_), [], [], 0.1)
            for s in readable:
                try:
                    data = s.recv(65536)
                except (ConnectionResetError, BrokenPipeError):
                    data = b""
                if not data:
                    closed[open_.pop(s)] += 1
    finally:
        for _, s in socks:
            s.close()
    figures.dropped = sum(closed.values())
    figures.replies = closed
    figures.elapsed_s = time.monotonic() - t0
    return dict(closed)


def rss(pid: int) -> int:
    return psutil.Process(pid).memory_info().rss


class HostileRun:
    """One attack on one booted system (a chaos_rig.Replay)."""

    def __init__(self, replay: Replay, frames: int, seed: int, long_subscriptions: bool = False):
        self.replay = replay
        self.home = replay.home
        self.cfg = self.home.config()
        self.report = Report(frames, seed)
        self.long_subscriptions = long_subscriptions
        corpus = list(hostile_corpus.corpus(seed, frames))
        router = list(hostile_corpus.corpus(seed, frames, router=True))
        big = big_frames()
        self.frames = {"rep": corpus + big, "router": router + big}

    def restarts(self) -> dict[str, int]:
        services = self.home.status()["services"]  # the orchestrator's own restarts: its pid (supervisord's)
        return {s: services[s]["restarts"] or 0 for s in SERVICES if s in services}

    def run(self) -> Report:
        t0 = time.monotonic()
        ctx = zmq.Context.instance()
        for service in SERVICES:
            self.attack_service(ctx, service)
        self.report.system_after = self.home.wait_state("RUNNING", timeout=30)["system"]
        for service in SERVICES:  # a normal request is answered by each
            self.home.request(service, "ping", timeout_ms=5000)
        self.report.settled_bar = self.replay.step()
        for s in self.report.services.values():
            # what stays: past the heartbeat that gives back freed memory (runtime.TRIM_GROWTH_BYTES): two beats on
            wait_for(lambda s=s: self._uptime(s.service) >= s.done_uptime + 1.5, 30, f"{s.service} beat again")
            s.rss_after = rss(s.pid_before)
            s.pid_after = self.home.pid_of(s.service)
        restarts = self.restarts()
        for s in self.report.services.values():
            s.restarts_after = restarts.get(s.service, 0)
        self.report.elapsed_s = time.monotonic() - t0
        return self.report

    def attack_service(self, ctx: zmq.Context, service: str) -> None:
        pid = self.home.pid_of(service)
        sf = ServiceFigures(service, pid, rss_before=rss(pid), restarts_before=self.restarts().get(service, 0))
        self.report.services[service] = sf
        before = self.home.status_of(service)["wire_errors"]
        kind = "router" if service in ROUTERS else "rep"
        fig = Figures(service, self.cfg.endpoint(service, "rep"), kind)
        attack_requests(ctx, fig, self.frames[kind])
        fig.counted = self._counted(service, before, fig.sent)
        fig.rss_after = rss(pid)
        self.report.endpoints.append(fig)

        before = self.home.status_of(service)["wire_errors"]
        churn = Figures(service, fig.endpoint, "churn")
        attack_churn(ctx, churn, self.frames["rep"][: max(1, self.report.frames // 10)])
        churn.counted = self._counted(service, before, churn.sent)
        churn.rss_after = rss(pid)
        self.report.endpoints.append(churn)

        before = self.home.status_of(service)["wire_errors"]
        other = Figures(service, fig.endpoint, "other")
        frames = [hostile_corpus.Frame(op, (msgpack.packb(hostile_corpus.request(op, hostile_corpus.valid_args(op),
                                                                                 f"o-{i}")),))
                  for i, op in enumerate(READ_ONLY_OPS * max(1, self.report.frames // 100))]
        attack_requests(ctx, other, frames)
        other.counted = self._counted(service, before, 0, timeout=0)
        other.rss_after = rss(pid)
        self.report.endpoints.append(other)

        raw = Figures(service, fig.endpoint, "raw")
        attack_raw(raw, max(len(RAW), self.report.frames // 50), wait_s=2.0)
        raw.rss_after = rss(pid)
        self.report.endpoints.append(raw)

        pub = Figures(service, self.cfg.endpoint(service, "pub"), "pub")
        prefix = LONG_PREFIX_BYTES if self.long_subscriptions else SUB_PREFIX_BYTES

        def read() -> None:  # the subscriptions read by the PUB: its RSS while the subscriber is connected
            self._heartbeats(service, 2.0)
            pub.rss_after = rss(pid)

        attack_publisher(ctx, pub, junk_subscriptions(self.report.seed, self.report.frames, prefix), read)
        self.report.endpoints.append(pub)
        sf.done_uptime = self._uptime(service)

    def _counted(self, service: str, before: dict[str, int], sent: int, timeout: float = 15.0) -> dict[str, int]:
        """The service's wire_errors growth (read from its status) once it reaches ``sent``, or as it is after
        ``timeout`` s (the check then says what is missing)."""
        deadline = time.monotonic() + timeout
        while True:
            after = self.home.status_of(service, timeout_ms=5000)["wire_errors"]
            growth = {k: after.get(k, 0) - before.get(k, 0) for k in set(after) | set(before)}
            growth = {k: v for k, v in growth.items() if v}
            if sum(growth.values()) >= sent or time.monotonic() >= deadline:
                return growth
            time.sleep(0.2)

    def _uptime(self, service: str) -> float:
        """The service's uptime in its last heartbeat as the orchestrator saw it (the orchestrator's own status for
        itself, which publishes sys.state each second)."""
        if service == "orchestrator":
            return self.home.status_of(service)["uptime_s"]
        return self.home.status()["services"][service]["uptime_s"] or 0.0

    def _heartbeats(self, service: str, seconds: float) -> None:
        """Wait until ``service`` has published for ``seconds`` more: a PUB reads the subscriptions sent to it when it
        sends."""
        start = self._uptime(service)
        wait_for(lambda: self._uptime(service) >= start + seconds, 15, f"{service} published for {seconds} s more")


def check(report: Report) -> list[str]:
    """What is wrong in a report (empty: the acceptance holds)."""
    wrong = []
    for f in report.endpoints:
        if f.kind == "pub":
            continue
        if f.kind == "other":
            if f.answered != f.sent or f.replies.get(wire.HANDLER_ERROR):
                wrong.append(f"{f.service}: {f.sent} well-formed requests, answered {dict(f.replies)}")
            continue
        if f.kind == "churn":
            if sum(f.counted.values()) != f.sent:
                wrong.append(f"{f.service}: {f.sent} sent by fresh REQ sockets, {f.counted} counted")
            continue
        if f.kind == "raw":
            n = len(RAW)
            sent = Counter({k: f.sent // n + (i < f.sent % n) for i, k in enumerate(RAW) if k not in HELD_OPEN})
            if +(sent - f.replies):
                wrong.append(f"{f.service}: raw connections not closed by ZeroMQ: {dict(+(sent - f.replies))}")
            continue
        if f.answered + f.dropped != f.sent or f.dropped != f.expected_drops:
            wrong.append(f"{f.service}: {f.sent} sent, {f.answered} answered, {f.dropped} dropped "
                         f"({f.expected_drops} without delimiter)")
        expected = Counter(f.replies)
        expected[wire.BAD_FRAMES] += f.expected_drops
        if dict(+expected) != f.counted:
            wrong.append(f"{f.service}: counters grew by {f.counted}, replies and drops were {dict(+expected)}")
        if f.bad_replies:
            wrong.append(f"{f.service}: {len(f.bad_replies)} bad replies, first {f.bad_replies[0]}")
    for s in report.services.values():
        if s.pid_after != s.pid_before or s.restarts_after != s.restarts_before:
            wrong.append(f"{s.service} restarted: pid {s.pid_before} -> {s.pid_after}, restarts "
                         f"{s.restarts_before} -> {s.restarts_after}")
        if s.growth >= 20 * MB:
            wrong.append(f"{s.service}: RSS grew {s.growth / MB:.1f} MB")
    if report.system_after != "RUNNING":
        wrong.append(f"system {report.system_after} after the attack")
    return wrong


def frames_per_endpoint() -> int:
    """ORACLE_HOSTILE_FRAMES, else 10 000 with ORACLE_HOSTILE_FULL=1, else the short form's 300."""
    if os.environ.get("ORACLE_HOSTILE_FRAMES"):
        return int(os.environ["ORACLE_HOSTILE_FRAMES"])
    return 10_000 if os.environ.get("ORACLE_HOSTILE_FULL") == "1" else 300


def seed() -> int:
    return int(os.environ.get("ORACLE_HOSTILE_SEED") or 16)


def main() -> int:
    import argparse
    import tempfile

    ap = argparse.ArgumentParser(description="the hostile suite in full against a throwaway system")
    ap.add_argument("--frames", type=int, default=10_000, help="corpus frames per request endpoint")
    ap.add_argument("--seed", type=int, default=seed())
    ap.add_argument("--long-subscriptions", action="store_true",
                    help=f"junk subscriptions up to {LONG_PREFIX_BYTES} bytes (a known growth of every PUB)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="oracle-hostile-") as tmp:
        replay = Replay(Path(tmp))
        try:
            replay.boot()
            report = HostileRun(replay, args.frames, args.seed, args.long_subscriptions).run()
        finally:
            replay.close()
    print(report.text())
    wrong = check(report)
    print("\n".join(wrong) if wrong else "every frame answered or dropped and counted; no restart; RSS bounded")
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
