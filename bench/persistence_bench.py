"""Persistence throughput: acknowledged writes per second (single and batched), outbox drain rate into
PostgreSQL, and RSS.

    python bench/persistence_bench.py [--n 2000] [--batch 100] [--pg-dsn DSN]

Without --pg-dsn (or $ORACLE_BENCH_PG) the drain is measured against a sink that accepts everything,
which isolates the store's own cost.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import psutil

from services.persistence.drain import drain_once
from services.persistence.sinks import Batch
from services.persistence.store import Store


def trade(i: int) -> dict[str, object]:
    return {"id": str(uuid.uuid4()), "session_id": "bench001", "timestamp": datetime.now(UTC), "symbol": "EURUSD",
            "direction": 1, "intensity": 2, "action": "CLOSE", "volume": 0.1, "entry_price": 1.1,
            "exit_price": 1.1012, "pnl": float(i), "pnl_pips": 12.0, "commission": 0.7, "hmm_state": 3}


class NullSink:
    name = "null"

    def push(self, batch: Batch) -> list[str]:
        return batch.ids

    def close(self) -> None:
        pass


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=2000)
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--pg-dsn", default=os.environ.get("ORACLE_BENCH_PG"))
    args = p.parse_args()
    if args.pg_dsn:
        from services.persistence.migrate import apply_migrations
        from services.persistence.sinks.postgres import PostgresSink

        apply_migrations(args.pg_dsn)
        sink = PostgresSink(args.pg_dsn)
    else:
        sink = NullSink()
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "bench.db"
        with Store.open(db, sinks=(sink.name,)) as store:
            t0 = time.perf_counter()
            for i in range(args.n):
                store.write("trades", trade(i))
            single = args.n / (time.perf_counter() - t0)
            t0 = time.perf_counter()
            for start in range(0, args.n, args.batch):
                store.write_batch([("trades", trade(i)) for i in range(start, min(args.n, start + args.batch))])
            batched = args.n / (time.perf_counter() - t0)
            backlog = store.backlog(sink.name).pending
            t0 = time.perf_counter()
            delivered = 0
            while store.backlog(sink.name).pending:
                result = drain_once(store, sink, batch_size=500)
                if result.error:
                    raise SystemExit(f"drain failed: {result.error}")
                delivered += result.delivered
            drain = delivered / (time.perf_counter() - t0)
        sink.close()
    rss = psutil.Process().memory_info().rss / 2**20
    print(f"acknowledged writes/s, single:        {single:10.0f}")
    print(f"acknowledged writes/s, batch of {args.batch:<4}: {batched:10.0f}")
    print(f"drain into {sink.name:<8} records/s:     {drain:10.0f}  ({backlog} records)")
    print(f"RSS: {rss:.1f} MiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
