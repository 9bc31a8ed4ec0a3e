"""Helper process for test_pers_faults: writes trades in a loop and prints each acknowledged id.

usage: python pers_crash_writer.py DB_PATH
Every 5th step is a batch of 10; every 7th step re-sends the previous record (a sender retry).
"""

from __future__ import annotations

import sys
import uuid
from datetime import UTC, datetime

from services.persistence.store import Store

NS = uuid.UUID("00000000-0000-0000-0000-00000000c0de")


def record(n: int) -> dict[str, object]:
    return {
        "id": str(uuid.uuid5(NS, str(n))), "session_id": "crash", "timestamp": datetime(2026, 1, 1, tzinfo=UTC),
        "symbol": "EURUSD", "direction": 1, "action": "CLOSE", "volume": 0.01, "pnl": float(n),
    }


def main() -> None:
    store = Store.open(sys.argv[1], sinks=("supabase",))
    n = 0
    step = 0
    out = sys.stdout
    while True:
        step += 1
        if step % 5 == 0:
            batch = [("trades", record(n + k)) for k in range(10)]
            acks = store.write_batch(batch)
            n += 10
        elif step % 7 == 0 and n:
            acks = [store.write("trades", record(n - 1))]
        else:
            acks = [store.write("trades", record(n))]
            n += 1
        out.write("".join(f"{a.id} {a.status}\n" for a in acks))
        out.flush()


if __name__ == "__main__":
    main()
