"""Hostile frames at a real service (the orchestrator, started as a process): frames of 20 and 50 MB, the
"amplification" ping (20 M empty lists in 20 MB), a dense frame under every length limit and a 100 KB op name are
each answered with a clear error and counted; the service answers on, its RSS barely grows, its log stays short."""

import time

import msgpack
import pytest
import zmq
from harness import Home, wait_for

from common import wire

MB = 1_000_000


@pytest.fixture
def home(tmp_path):
    h = Home(tmp_path)
    yield h
    h.close()
    for proc in h.procs.values():
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def head(op: str, req_id: str) -> bytes:
    """A request map's start, up to its ``args`` key (the value follows)."""
    return b"\x84" + b"".join(msgpack.packb(x) for x in ("v", 1, "op", op, "id", req_id, "args"))


def amplification_ping(n: int) -> bytes:
    return head("ping", "amp-1") + b"\xdd" + n.to_bytes(4, "big") + b"\x90" * n


def ask(ctx: zmq.Context, endpoint: str, frame: bytes) -> tuple[dict, float]:
    """One raw request on a fresh REQ socket: its reply (decoded as plain msgpack) and the seconds it took."""
    sock = ctx.socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(endpoint)
    try:
        t0 = time.monotonic()
        sock.send(frame)
        assert sock.poll(30_000), "no reply"  # a bound on the wait, not a timing assertion
        reply = msgpack.unpackb(sock.recv())
        return reply, time.monotonic() - t0
    finally:
        sock.close()


def test_hostile_frames_are_answered_counted_and_cost_little(home: Home):
    home.start("orchestrator")
    wait_for(lambda: home.request("orchestrator", "ping"), 20, "the orchestrator up")
    endpoint = home.config().endpoint("orchestrator", "rep")
    ctx = zmq.Context.instance()
    before = home.status_of("orchestrator")
    hostile = {
        "junk 20 MB": head("ping", "j-1") + msgpack.packb(b"\x00" * (20 * MB)),
        "junk 50 MB": head("ping", "j-2") + msgpack.packb("s" * (50 * MB)),
        "amplification 20 MB": amplification_ping(20 * MB),
        "dense 2 MB of empty maps": msgpack.packb({"v": 1, "op": "ping", "id": "d-1",
                                                   "args": [[{}] * 60_000] * 33}),
    }
    for what, frame in hostile.items():
        reply, took = ask(ctx, endpoint, frame)
        rss = home.status_of("orchestrator")["rss_bytes"] / MB
        print(f"{what}: {len(frame):,d} bytes, answered in {took * 1000:.0f} ms, RSS {rss:.1f} MB: "
              f"{reply['error']['message']}")
        assert reply["ok"] is False and reply["error"]["code"] == wire.TOO_LARGE, (what, reply)
    reply, _ = ask(ctx, endpoint, msgpack.packb({"v": 1, "op": "o" * 100_000, "id": "n-1", "args": {}}))
    assert reply["error"]["code"] == wire.UNKNOWN_OP and len(reply["error"]["message"]) < 200
    assert reply["error"]["message"].endswith("...[100000 chars]'")

    after = home.status_of("orchestrator")  # it answers on
    counts = {k: after["wire_errors"].get(k, 0) - before["wire_errors"].get(k, 0) for k in after["wire_errors"]}
    assert counts == {wire.TOO_LARGE: 4, wire.UNKNOWN_OP: 1}
    growth = after["rss_bytes"] - before["rss_bytes"]
    print(f"orchestrator RSS {before['rss_bytes'] / MB:.1f} -> {after['rss_bytes'] / MB:.1f} MB")
    assert growth < 20 * MB
    assert home.procs["orchestrator"].poll() is None
    log = home.log("orchestrator")
    assert "...[100000 chars]" in log and max(map(len, log.splitlines())) < 3000
