"""Per-message cost of the wire layer for the hot messages, against raw msgpack of the same map (the floor).

For each hot message (bar, signal, ack, heartbeat; the executor's positions and order requests and the
connector's replies; the outbox's write batch and its answer) it times, in microseconds per message:

- ``floor``: ``msgpack.packb`` + ``msgpack.unpackb`` of the whole frame's plain map (what any wire must pay);
- ``to_wire`` / ``from_wire``: the record <-> plain map conversion and its validation;
- ``encode`` / ``decode``: the frame (``wire.encode_pub``/``decode_pub``, ``encode_request``/``decode_request``,
  ``encode_reply``/``decode_reply``), record in, record out;
- ``bus``: the sockets' path over inproc (``Publisher.publish`` + ``Subscriber.drain`` for events; for a request
  ``Requester.send`` + ``Responder.serve_ready`` + ``Requester.take_reply``, i.e. request AND reply);
  ``zmq``: the same frames sent and received by bare zmq sockets (the floor of the bus row).

``ratio`` is (encode + decode) / floor. Figures are CPU time (the process's, so a busy machine's preemption does
not count), the best of ``--repeat`` runs.

    nice -n 19 .venv/bin/python bench/message_bench.py [--number 20000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgpack
import zmq

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import bus, messages, wire  # noqa: E402

SYMBOLS = [f"SYM{i:02d}" for i in range(20)]


def _signal_record(i: int) -> dict:
    return {"id": f"5b0c7a6e-0000-4000-8000-{i:012d}", "timestamp": "2026-01-02T04:00:00.000000Z",
            "bar_time": "2026-01-02T03:00:00.000000Z", "symbol": SYMBOLS[i % 20], "action": "BUY",
            "direction": 1, "intensity": 2, "hmm_state": 1,
            "data": {"close": 1.10234, "action_index": 4, "virtual_pnl": 12.5}}


def samples() -> dict[str, tuple[str, str, Any]]:
    """name -> (kind, topic or op, record): kind is event, request or reply."""
    account = messages.AccountInfo(10_000.0, 10_012.5, 120.0, 9_892.5, 8343.75, "USD", 30.0, 12.5, -0.4, -1.2)
    positions = [messages.Position(1000 + i, SYMBOLS[i], 1 if i % 2 else -1, 0.03, 1.1 + i / 100, 1.7e9 + i,
                                   None, None, f"oracle:{SYMBOLS[i]}:1", f"oracle:{SYMBOLS[i]}:1", 40.0, 1.11,
                                   3.0, -0.1, -0.2, 2.7) for i in range(4)]
    quotes = {s: messages.BookQuote(1.1, 1.1002, 1.0) for s in SYMBOLS[:4]}
    return {
        "Bar": ("event", "bar.SYM00.H1", messages.Bar("SYM00", "H1", 1_767_322_800, 1.1, 1.102, 1.099, 1.101, 1234.0)),
        "Signal": ("event", "signal.SYM00", messages.Signal("SYM00", 1_767_322_800, 1.101, 4, 1, 2, 1, 12.5, 1)),
        "Ack": ("event", "ack.SYM00", messages.Ack("SYM00", 1_767_322_800, "OK", "", {
            "action": "OPEN", "ticket": 1001, "volume": 0.03, "fill_price": 1.1012, "slippage_pips": 0.2})),
        "Heartbeat": ("event", "hb.executor", messages.Heartbeat(
            "executor", 4242, 1_767_322_800_000_000_000, "RUNNING", 123.4, 81_000_000,
            ["executor.sync"], {"signals": 400, "acks": 400, "orders": 12, "bars_seen": 0}, 0, {},
            {"connected": True, "symbols": 20})),
        "positions req": ("request", "positions", messages.NoArgs()),
        "Positions reply": ("reply", "positions", messages.Positions(positions, account, quotes, {}, 1.7e9)),
        "OrderOpen req": ("request", "order_open", messages.OrderOpenArgs(
            "SYM00", 1, 0.03, "c-SYM00-1767322800-1", 0.0025, None, "oracle:SYM00:2")),
        "OrderClose req": ("request", "order_close", messages.OrderCloseArgs(1001, None, "c-SYM00-1767322800-2")),
        "OrderResult reply": ("reply", "order_open", messages.OrderResult(
            True, "c-SYM00-1767322800-1", 1001, 1.1012, 0.03, None, None)),
        "Write req (20 rec)": ("request", "write", messages.WriteArgs(
            {"signals": [_signal_record(i) for i in range(20)]})),
        "WriteResult reply": ("reply", "write", messages.WriteResult(
            [_signal_record(i)["id"] for i in range(20)], {})),
    }


def _best(fn: Callable[[], Any], number: int, repeat: int) -> float:
    """Best of ``repeat`` runs of ``number`` calls, in microseconds per call."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.process_time()
        for _ in range(number):
            fn()
        best = min(best, time.process_time() - t0)
    return best / number * 1e6


def _frame_map(kind: str, name: str, record: Any) -> dict:
    body = messages.to_wire(record)
    if kind == "event":
        return {"v": 1, "type": messages.type_name(record), "src": "bench", "epoch": 1, "seq": 1,
                "ts": time.time_ns(), "body": body}
    if kind == "request":
        return {"v": 1, "op": name, "id": "bench-1", "args": body}
    return {"v": 1, "id": "bench-1", "ok": True, "result": body}


def _pubsub_cost(ctx: zmq.Context, topic: str, record: Any, batch: int, repeat: int) -> tuple[float, float]:
    """(bus, zmq) us per message: Publisher.publish + Subscriber.drain, and bare PUB/SUB of the same frames."""
    endpoint = f"inproc://bench-pub-{id(record)}"
    pub = bus.Publisher(ctx, endpoint, "bench", 1)
    sub = bus.Subscriber(ctx, [endpoint], [topic], bus.WireErrors("bench"))
    while not sub.drain():  # the slow joiner: publish until the subscription is in place
        pub.publish(topic, record)
        time.sleep(0.01)
    frames = wire.encode_pub(topic, "bench", 1, 1, 1, record)

    def via_bus() -> None:
        for _ in range(batch):
            pub.publish(topic, record)
        got = 0
        while got < batch:
            got += len(sub.drain())

    def bare() -> None:
        for _ in range(batch):
            pub.sock.send_multipart(frames)
        for _ in range(batch):
            sub.sock.recv_multipart()

    cost_bus = _best(via_bus, 1, repeat) / batch
    cost_zmq = _best(bare, 1, repeat) / batch
    pub.close()
    sub.close()
    return cost_bus, cost_zmq


def _reqrep_cost(ctx: zmq.Context, op: str, args: Any, result: Any, number: int,
                 repeat: int) -> tuple[float, float]:
    """(bus, zmq) us per round trip: Requester.send + Responder.serve_ready + take_reply, and bare REQ/REP."""
    endpoint = f"inproc://bench-rep-{op}-{id(args)}"
    rep = bus.Responder(ctx, endpoint, {op: lambda _args: result}, bus.WireErrors("bench"))
    req = bus.Requester(ctx, endpoint, "bench", 10_000)
    request_frame = wire.encode_request(op, "bench-1", args)
    reply_frame = wire.encode_reply("bench-1", result)

    def via_bus() -> None:
        req.send(op, args)
        while not rep.serve_ready():
            pass
        while req.take_reply() is None:
            pass

    def bare() -> None:
        req.sock.send(request_frame)
        rep.sock.recv_multipart()
        rep.sock.send(reply_frame)
        req.sock.recv_multipart()

    cost_bus = _best(via_bus, number, repeat)
    cost_zmq = _best(bare, number, repeat)
    req.close()
    rep.close()
    return cost_bus, cost_zmq


def _row(name: str, kind: str, where: str, record: Any, reply: Any, ctx: zmq.Context, number: int,
         repeat: int) -> dict:
    pack = msgpack.Packer(use_bin_type=True).pack
    plain = _frame_map(kind, where, record)
    body = messages.to_wire(record)
    cls = type(record)
    row: dict[str, Any] = {"message": name, "bytes": len(pack(plain))}
    row["floor"] = _best(lambda: msgpack.unpackb(pack(plain), raw=False, strict_map_key=False), number, repeat)
    row["to_wire"] = _best(lambda: messages.to_wire(record), number, repeat)
    row["from_wire"] = _best(lambda: messages.from_wire(cls, body), number, repeat)
    if kind == "event":
        pub_frames = wire.encode_pub(where, "bench", 1, 1, 1, record)
        row["encode"] = _best(lambda: wire.encode_pub(where, "bench", 1, 1, 1, record), number, repeat)
        row["decode"] = _best(lambda: wire.decode_pub(pub_frames), number, repeat)
        row["bus"], row["zmq"] = _pubsub_cost(ctx, where, record, 200, max(repeat, 3) * 4)
    elif kind == "request":
        req_frames = [wire.encode_request(where, "bench-1", record)]
        row["encode"] = _best(lambda: wire.encode_request(where, "bench-1", record), number, repeat)
        row["decode"] = _best(lambda: wire.decode_request(req_frames), number, repeat)
        row["bus"], row["zmq"] = _reqrep_cost(ctx, where, record, reply, max(number // 10, 200), repeat)
    else:
        rep_frames = [wire.encode_reply("bench-1", record)]
        row["encode"] = _best(lambda: wire.encode_reply("bench-1", record), number, repeat)
        row["decode"] = _best(lambda: wire.decode_reply(rep_frames, where), number, repeat)
    row["ratio"] = (row["encode"] + row["decode"]) / row["floor"]
    return row


def measure(number: int = 20_000, repeat: int = 5) -> list[dict]:
    """One row per hot message: us per message of each stage (see the module's doc)."""
    ctx = zmq.Context.instance()
    all_samples = samples()
    replies = {op: rec for kind, op, rec in all_samples.values() if kind == "reply"}
    replies["order_close"] = replies["order_open"]
    return [_row(name, kind, where, record, replies.get(where), ctx, number, repeat)
            for name, (kind, where, record) in all_samples.items()]


def print_table(rows: list[dict]) -> None:
    cols = ["floor", "to_wire", "from_wire", "encode", "decode", "ratio", "bus", "zmq"]
    print(f"{'message (us/msg)':<20}{'bytes':>6}" + "".join(f"{c:>10}" for c in cols))
    for row in rows:
        cells = "".join(f"{row[c]:>10.2f}" if c in row else f"{'-':>10}" for c in cols)
        print(f"{row['message']:<20}{row['bytes']:>6}{cells}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--number", type=int, default=20_000, help="calls per timed run")
    ap.add_argument("--repeat", type=int, default=5, help="timed runs; the best is kept")
    args = ap.parse_args()
    print_table(measure(args.number, args.repeat))


if __name__ == "__main__":
    main()
