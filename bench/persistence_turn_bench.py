"""Persistence CPU per bar in-process: the service object (its real store, a real Responder's decode and encode,
no socket I/O) serving one bar's write requests as the pipeline sends them, then their group commit and replies.

    .venv/bin/python bench/persistence_turn_bench.py [--bars 40] [--reps 15] [--symbols 20] [--prefill BARS]

Per bar, four requests (bench/persistence_service_bench.py's shapes, the pipeline's 3.97 requests a bar): the
executor's signals and acks (one per symbol each), the connector's real trades and the paper trader's trades
(`--real`, `--paper` of them; session_id empty, filled in by the store). Each request is served in its own loop turn
(decode, prepare, deferred), committed (one transaction) and answered (reply encoded), as in the service. Printed:
CPU ms per bar (time.process_time), the median over `--reps` runs of `--bars` bars, the per-part split, and the
cost of one running totals update (`_update_totals`, done once a second when real trades were stored), and the bytes
the process wrote and read per bar (/proc/self/io: the WAL's frames, the checkpoints, the page cache's misses), then
the WAL frames of one more bar, by the table or index of their page. `--prefill` stores that many bars first (a bar's
pages grow with the store until its random-keyed indexes have more leaves than a bar has records);
`--time-ordered-ids` makes the records' ids rise with time (a what-if: the primary keys' random leaves).
"""

from __future__ import annotations

import argparse
import collections
import itertools
import statistics
import struct
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from harness import Home  # noqa: E402

from common import bus, messages, wire  # noqa: E402
from common.peer import Peer  # noqa: E402
from services.persistence.service import Persistence  # noqa: E402

_ORDERED = itertools.count(1)
TIME_ORDERED_IDS = False  # --time-ordered-ids


def record_id() -> str:
    """A random id (the senders' uuid5 ids are as random to the store's primary-key index), or with
    --time-ordered-ids one whose leading bits rise with each record made (a what-if: each table's ids then land on
    its primary key's last leaf instead of on a random leaf each)."""
    if not TIME_ORDERED_IDS:
        return str(uuid.uuid4())
    return str(uuid.UUID(int=(next(_ORDERED) << 80) | uuid.uuid4().int >> 48))


def trade(i: int, bar: int, bar_time: str, *, paper: bool) -> dict:
    return {"id": record_id(), "session_id": "", "trade_id": f"t{bar}-{i}",
            "timestamp": datetime.now(UTC).isoformat(),
            "bar_time": bar_time, "symbol": "EURUSD", "direction": 1, "intensity": 2,
            "action": "OPEN" if i % 2 == 0 else "CLOSE", "volume": 0.1, "entry_price": 1.1, "exit_price": 1.1012,
            "pnl": float(i), "pnl_pips": 12.0, "commission": 0.7, "swap": 0.0, "hmm_state": 3, "is_paper": paper,
            "comment": None, "position_id": str(1000 + bar), "client_order_id": f"c{bar}-{i}"}


def bar_requests(bar: int, symbols: int, real: int, paper: int) -> list[bytes]:
    """One bar's write requests as the wire carries them."""
    bar_time = datetime.fromtimestamp(1_700_000_000 + 60 * bar, UTC).isoformat()
    now = datetime.now(UTC).isoformat()
    syms = [f"SYM{i:02d}" for i in range(symbols)]
    signals = [{"id": record_id(), "timestamp": bar_time, "bar_time": bar_time, "symbol": s, "action": "LONG",
                "direction": 1, "intensity": 2, "hmm_state": 3,
                "data": {"close": 1.2345, "action_index": 5, "virtual_pnl": 12.5}} for s in syms]
    acks = [{"id": record_id(), "timestamp": now, "symbol": s, "bar_time": bar_time, "signal_id": sig["id"],
             "decision": "HOLD", "status": "OK", "client_order_id": None, "position_id": None, "volume": None,
             "price": None, "reason": None, "data": {"detail": "no change"}}
            for s, sig in zip(syms, signals, strict=True)]
    # the executor's signals and acks in one request (its outbox sends every table's waiting records together)
    writes = [messages.WriteArgs({"signals": signals, "acks": acks}),
              messages.WriteArgs({"trades": [trade(i, bar, bar_time, paper=False) for i in range(real)]}),
              messages.WriteArgs({"trades": [trade(i + real, bar, bar_time, paper=True) for i in range(paper)]})]
    return [wire.encode_request("write", f"r{bar}-{k}", w) for k, w in enumerate(writes)
            if any(w.tables.values())]


def serve_bar(svc: Persistence, rep: bus.Responder, requests: list[bytes]) -> list[bytes]:
    """Each request in its own turn, as the loop does: served (deferred), committed, answered."""
    replies = []
    for frame in requests:
        got = rep._answer([frame], [b"client", b""], rep.caller)
        assert got is None, wire.decode_reply([got], "write")
        svc._commit_writes()
        for w in rep.waiting:
            replies.append(rep._finish(w))
        rep.waiting = []
    return replies


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--bars", type=int, default=40)
    p.add_argument("--reps", type=int, default=15)
    p.add_argument("--symbols", type=int, default=20)
    p.add_argument("--real", type=int, default=4, help="the connector's trades per bar")
    p.add_argument("--paper", type=int, default=5, help="the paper trader's trades per bar")
    p.add_argument("--prefill", type=int, default=0,
                   help="bars stored before the measure (in transactions of 50 bars): the store's size matters")
    p.add_argument("--idle", type=float, default=0.0,
                   help="instead: the service's loop left idle (a session running) this many seconds: its CPU ms/s")
    p.add_argument("--time-ordered-ids", action="store_true",
                   help="what-if: record ids whose leading bits rise with time (record_id)")
    args = p.parse_args()
    global TIME_ORDERED_IDS
    TIME_ORDERED_IDS = args.time_ordered_ids
    if args.idle:
        return idle(args.idle)
    with tempfile.TemporaryDirectory() as tmp:
        home = Home(Path(tmp))
        svc = Persistence(home.config())
        svc._open()
        svc.recorder.start_session(datetime.now(UTC), initial_balance=10_000.0, symbols=["EURUSD"],
                                   close_on_day_change=False)
        handlers = {messages.OP_WRITE.name: svc._op_write}
        rep = bus.Responder(svc.ctx, f"inproc://bench-{uuid.uuid4().hex}", handlers, bus.WireErrors("bench"),
                            concurrent=True)
        rep.caller = Peer("service", "executor")
        rep.permits = {op: _Any() for op in rep.permits}
        bar = prefill(svc, args.prefill, args.symbols, args.real, args.paper)
        per_bar, totals, io = [], [], []
        for r in range(args.reps + 1):
            loads = [bar_requests(bar + b, args.symbols, args.real, args.paper) for b in range(args.bars)]
            bar += args.bars
            io0 = _io()
            t0 = time.process_time()
            for reqs in loads:
                replies = serve_bar(svc, rep, reqs)
                assert len(replies) == len(reqs)
            used = time.process_time() - t0
            io1 = _io()
            t1 = time.process_time()
            svc._update_totals()
            tot = time.process_time() - t1
            if r:  # the first run warms up
                per_bar.append(used * 1000 / args.bars)
                totals.append(tot * 1000)
                io.append({k: (io1[k] - io0[k]) / args.bars for k in io0})
        print("WAL frames of one more bar, by b-tree: " + wal_pages(svc, rep, bar_requests(bar, args.symbols, args.real,
                                                                                           args.paper)))
        ok = wire.decode_reply([replies[0]], "write")
        assert ok.ok and len(ok.result.acked) == 2 * args.symbols, ok  # the signals and acks
        records = 2 * args.symbols + args.real + args.paper
        med = statistics.median(per_bar)
        print(f"persistence in-process CPU per bar ({len(loads[0])} requests, {records} records): "
              f"median {med:.3f} ms (min {min(per_bar):.3f}, max {max(per_bar):.3f}; {args.reps} x {args.bars} bars)"
              f" = {med * 1000 / records:.1f} us/record")
        med_io = {k: statistics.median(i[k] for i in io) for k in io[0]}
        print(f"I/O per bar (/proc/self/io, median): written {med_io['wchar'] / 1024:.0f} KiB in {med_io['syscw']:.1f}"
              f" writes, read {med_io['rchar'] / 1024:.0f} KiB in {med_io['syscr']:.1f} reads; store after {bar} bars "
              f"{svc.db_path.stat().st_size / 2**20:.1f} MiB")
        print(f"running totals update (_update_totals, after {args.bars} bars): median {statistics.median(totals):.3f}"
              f" ms")
        rep.close()
        svc.on_stop()
        home.close()
    return 0


def prefill(svc: Persistence, bars: int, symbols: int, real: int, paper: int) -> int:
    """`bars` bars of records stored straight into the store (50 bars a transaction); returns the next bar."""
    store = svc.recorder.store
    sid = svc.recorder.session.session_id
    for start in range(0, bars, 50):
        items = []
        for b in range(start, min(bars, start + 50)):
            for frame in bar_requests(b, symbols, real, paper):
                args = wire.decode_request([frame]).args
                items += [(table, {**r, "session_id": r.get("session_id") or sid})
                          for table, records in args.tables.items() for r in records]
        store.write_batch(items)
    return bars


def wal_pages(svc: Persistence, rep: bus.Responder, requests: list[bytes]) -> str:
    """The frames one bar's commits append to the WAL (emptied first, no checkpoint meanwhile), counted by the table or
    index their page belongs to (SQLite's dbstat)."""
    conn = svc.recorder.store._conn
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.execute("PRAGMA wal_autocheckpoint=0")
    owner = {page: name for name, page in conn.execute("SELECT name, pageno FROM dbstat")}
    serve_bar(svc, rep, requests)
    owner.update({page: name for name, page in conn.execute("SELECT name, pageno FROM dbstat")})
    conn.execute("PRAGMA wal_autocheckpoint=1000")
    wal = Path(f"{svc.db_path}-wal").read_bytes()
    size = struct.unpack(">I", wal[8:12])[0]
    pages = [struct.unpack(">I", wal[at:at + 4])[0] for at in range(32, len(wal) - size - 23, 24 + size)]
    by = collections.Counter(owner.get(p, "?") for p in pages)
    return f"{len(pages)} (" + ", ".join(f"{name} {n}" for name, n in by.most_common()) + ")"


def _io() -> dict[str, int]:
    """This process's I/O counters (bytes through read/write calls, and the calls)."""
    with open("/proc/self/io") as f:
        return {k: int(v) for k, v in (line.split(": ") for line in f) if k in ("rchar", "wchar", "syscr", "syscw")}


PRODUCTION_CLOCKS = {"runtime": {"heartbeat_interval_s": 1.0, "hello_interval_s": 0.25, "request_timeout_ms": 2000}}


class _Standalone(Persistence):
    """RUNNING at once (no orchestrator); the store opened and the session started in a turn 0.37 s after the start
    (as the orchestrator's steps come, at a phase of their own), each loop turn counted; no SUB socket (the stream's
    messages are wakes of their own)."""

    handshake = False
    turns = 0
    _opened_at: float | None = None

    def __init__(self, cfg, dry_run: bool = False):
        super().__init__(cfg, dry_run)
        self.subscribe_to = {}  # no publisher runs here: a SUB socket would only retry its connects

    def on_tick(self, now: float) -> None:
        self.turns += 1
        if self.recorder is None:
            self._opened_at = self._opened_at or now + 0.37
            if now >= self._opened_at:
                self._open()
                self.recorder.start_session(datetime.now(UTC), initial_balance=10_000.0, symbols=["EURUSD"],
                                            close_on_day_change=False)
                self._totals_due = True
        super().on_tick(now)


def idle(seconds: float) -> int:
    """The loop of a RUNNING persistence (a session, production clocks) left alone: CPU ms per second, all its
    threads (process_time), and its loop turns (wakes) per second, measured from 2 s after the start."""
    with tempfile.TemporaryDirectory() as tmp:
        home = Home(Path(tmp), PRODUCTION_CLOCKS)
        cfg = home.config()
        cfg.path(cfg.run_dir).mkdir(parents=True, exist_ok=True)
        svc = _Standalone(cfg)
        marks: list[tuple[float, int]] = []

        def mark() -> None:
            marks.append((time.process_time(), svc.turns))

        start, stop = threading.Timer(2.0, mark), threading.Timer(2.0 + seconds, mark)
        start.start()
        stop.start()
        ender = threading.Timer(2.0 + seconds, svc.request_stop)
        ender.start()
        svc.run()
        (c0, t0), (c1, t1) = marks
        print(f"persistence idle (RUNNING, a session, {seconds:.0f} s): CPU {(c1 - c0) * 1000 / seconds:.3f} ms/s (all "
              f"threads, no SUB socket), loop turns {(t1 - t0) / seconds:.2f}"
              f"/s; progress {svc.progress}")
        home.close()
    return 0


class _Any:
    """Every role permitted (the bench's caller has none)."""

    def __contains__(self, _role: object) -> bool:
        return True


if __name__ == "__main__":
    raise SystemExit(main())
