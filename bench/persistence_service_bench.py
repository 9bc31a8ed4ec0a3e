"""Persistence SERVICE throughput: acknowledged writes per second through the REP `write` op (one record per
request, and batches), the drain rate of a backlog into PostgreSQL, and the process's RSS.

    .venv/bin/python bench/persistence_service_bench.py [--n 2000] [--batch 200] [--pg-dsn DSN]
    .venv/bin/python bench/persistence_service_bench.py --bars 300 [--symbols 20]

With --bars, the write load of the pipeline instead (bench/pipeline_bench.py, 20 symbols: per bar one batch of
signals and one of acks from the executor, a few trades without a session from the connector and the paper trader,
each batch one request as the senders' outboxes send them), back to back: the persistence process's CPU per bar.

The persistence process runs as in production (`python -m services.persistence`, a throwaway ORACLE_HOME);
the client is a Lazy Pirate REQ over ipc://, waiting for each reply (one request in flight, like the runtime's
outbox). With --pg-dsn (or $ORACLE_BENCH_PG) the PostgreSQL sink is enabled: the database refuses connections
while the backlog is written, then the time from the first delivery to an empty backlog gives the drain rate.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from harness import Home, wait_for  # noqa: E402
from measure import cpu_sample, cpu_used_s  # noqa: E402

from common import bus, messages  # noqa: E402


def event(i: int) -> dict:
    return {"id": str(uuid.uuid4()), "timestamp": datetime.now(UTC).isoformat(), "event_type": "BENCH",
            "severity": "INFO", "source": "bench", "message": f"record {i}", "data": {"i": i}}


def trade(i: int) -> dict:
    return {"id": str(uuid.uuid4()), "timestamp": datetime.now(UTC).isoformat(), "symbol": "EURUSD",
            "direction": 1, "intensity": 2, "action": "CLOSE", "volume": 0.1, "entry_price": 1.1,
            "exit_price": 1.1012, "pnl": float(i), "pnl_pips": 12.0, "commission": 0.7, "hmm_state": 3}


def bar_batches(bar: int, symbols: int) -> list[messages.WriteArgs]:
    """One bar's writes as the pipeline sends them (shapes of services/executor/inputs.py and
    common/records/real_trades.py): signals and acks carry no session_id, nor do the real trades."""
    bar_time = datetime.fromtimestamp(1_700_000_000 + 60 * bar, UTC).isoformat()
    now = datetime.now(UTC).isoformat()
    syms = [f"SYM{i:02d}" for i in range(symbols)]
    signals = [{"id": str(uuid.uuid4()), "timestamp": bar_time, "bar_time": bar_time, "symbol": s, "action": "LONG",
                "direction": 1, "intensity": 2, "hmm_state": 3,
                "data": {"close": 1.2345, "action_index": 5, "virtual_pnl": 12.5}} for s in syms]
    acks = [{"id": str(uuid.uuid4()), "timestamp": now, "symbol": s, "bar_time": bar_time, "signal_id": sig["id"],
             "decision": "HOLD", "status": "OK", "client_order_id": None, "position_id": None, "volume": None,
             "price": None, "reason": None, "data": {"detail": "no change"}}
            for s, sig in zip(syms, signals, strict=True)]
    trades = [{**trade(bar * 10 + i), "session_id": "", "trade_id": f"t{bar}-{i}", "bar_time": bar_time,
               "swap": 0.0, "is_paper": i == 2, "comment": None, "position_id": str(1000 + bar),
               "client_order_id": f"c{bar}-{i}", "action": "OPEN" if i == 0 else "CLOSE"} for i in range(3)]
    return [messages.WriteArgs({"signals": signals, "acks": acks}),  # the executor's: one request
            messages.WriteArgs({"trades": trades})]


def cpu_per_bar(req: bus.Requester, pid: int, bars: int, symbols: int) -> float:
    """The persistence process's CPU ms per bar over `bars` bars of writes sent back to back."""
    loads = [bar_batches(b, symbols) for b in range(bars)]
    c0 = cpu_sample(pid)
    for batches in loads:
        for args in batches:
            res = req.call("write", args, timeout_ms=10_000)
            assert len(res.acked) == sum(map(len, args.tables.values())), res.rejected
    return cpu_used_s(c0, cpu_sample(pid)) * 1000 / bars


def writes_per_s(req: bus.Requester, n: int, batch: int) -> float:
    t0 = time.perf_counter()
    for start in range(0, n, batch):
        records = [trade(i) for i in range(start, min(n, start + batch))]
        res = req.call("write", messages.WriteArgs({"trades": records}), timeout_ms=10_000)
        assert len(res.acked) == len(records), res.rejected
    return n / (time.perf_counter() - t0)


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=2000)
    p.add_argument("--batch", type=int, default=200)
    p.add_argument("--pg-dsn", default=os.environ.get("ORACLE_BENCH_PG"))
    p.add_argument("--bars", type=int, default=0, help="the pipeline's write load of this many bars instead")
    p.add_argument("--symbols", type=int, default=20)
    args = p.parse_args()
    overlay: dict = {"persistence": {"heartbeat_interval_s": 60}}
    if args.pg_dsn:
        from services.persistence.migrate import apply_migrations

        apply_migrations(args.pg_dsn)
        overlay["persistence"]["sinks"] = {"postgres": {"enabled": True, "dsn": args.pg_dsn}}
    with tempfile.TemporaryDirectory() as tmp:
        home = Home(Path(tmp), overlay)
        try:
            home.start("persistence")
            wait_for(lambda: home.request("persistence", "ping"), 15, "persistence answering")
            for step in ("persistence.open", "persistence.session"):
                assert home.request("persistence", "step", messages.StepArgs(step), timeout_ms=15_000).ok
            req = bus.Requester(bus.zmq.Context.instance(), home.config().endpoint("persistence", "rep"), "bench")
            if args.bars:
                pid = home.procs["persistence"].pid
                cpu_per_bar(req, pid, min(20, args.bars), args.symbols)  # warm up
                ms = cpu_per_bar(req, pid, args.bars, args.symbols)
                print(f"persistence CPU per bar ({args.symbols} symbols, {args.bars} bars back to back): {ms:.2f} ms")
                req.close()
                return 0
            single = writes_per_s(req, args.n, 1)
            batched = writes_per_s(req, args.n * 5, args.batch)
            print(f"acknowledged writes/s through the REP op, one record per request: {single:8.0f}")
            print(f"acknowledged writes/s through the REP op, batches of {args.batch:<4}:        {batched:8.0f}")
            if args.pg_dsn:
                drain_bench(home, req, args.pg_dsn, args.n * 5, args.batch)
            rss = home.status_of("persistence")["rss_bytes"] / 2**20
            print(f"persistence RSS after the runs: {rss:.1f} MiB")
            req.close()
        finally:
            home.close()
    return 0


def drain_bench(home: Home, req: bus.Requester, dsn: str, n: int, batch: int) -> None:
    import psycopg
    from psycopg.conninfo import conninfo_to_dict

    def backlog() -> int:
        return home.status_of("persistence")["persistence"]["backlog"]

    wait_for(lambda: backlog() == 0, 120, "the first backlog delivered")
    dbname = conninfo_to_dict(dsn)["dbname"]
    params = conninfo_to_dict(dsn)
    params["dbname"] = "postgres"
    admin = psycopg.connect(psycopg.conninfo.make_conninfo(**params), autocommit=True)
    admin.execute(f'ALTER DATABASE "{dbname}" ALLOW_CONNECTIONS false')
    admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> "
                  "pg_backend_pid()", (dbname,))
    try:
        writes_per_s(req, n, batch)
        start_backlog = backlog()
    finally:
        admin.execute(f'ALTER DATABASE "{dbname}" ALLOW_CONNECTIONS true')
        admin.close()
    last_full = time.perf_counter()
    while (left := backlog()) >= start_backlog:  # the sink's backoff: wait for the first delivery
        last_full = time.perf_counter()
        time.sleep(0.01)
    while left > 0:
        time.sleep(0.01)
        left = backlog()
    rate = start_backlog / (time.perf_counter() - last_full)
    print(f"backlog drain into PostgreSQL: {rate:8.0f} records/s ({start_backlog} records queued while it was down)")


if __name__ == "__main__":
    raise SystemExit(main())
