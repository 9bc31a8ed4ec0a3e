"""Helper process for the persistence service tests: a real service that persists a stream of records through
`Service.persist` (the runtime's outbox: kept until acknowledged, retried with the same ids).

usage: python pers_sender.py COUNT RATE   (ORACLE_HOME set; records per second; 0 = as fast as possible)

Even records are `events` (the fields any sender uses, no session_id), odd ones `trades` without a session_id.
Its op `sender_counts` (registered by this process only) reports made, pending, acked and rejected; its `status` is
the common part every process has. It does no handshake (no orchestrator).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from common import config, logs, messages, roles, runtime
from common.outbox import record_id


@dataclass(frozen=True, slots=True)
class SenderCounts:
    made: int
    total: int
    pending: int
    acked: int
    rejected: dict  # id -> why persistence refused it


OP_SENDER_COUNTS = messages.op("sender_counts", messages.NoArgs, SenderCounts, "test sender: its records' counts")
roles.declare(OP_SENDER_COUNTS.name, roles.ANY)


def record(i: int) -> tuple[str, dict]:
    ts = datetime.now(UTC).isoformat()
    if i % 2 == 0:
        return "events", {"id": record_id("events", "sender", i), "timestamp": ts, "event_type": "TEST_EVENT",
                          "severity": "INFO", "source": "sender", "symbol": "EURUSD", "message": f"record {i}",
                          "data": {"i": i}}
    return "trades", {"id": record_id("trades", "sender", i), "timestamp": ts, "symbol": "EURUSD", "direction": 1,
                      "action": "CLOSE", "volume": 0.01, "pnl": float(i), "is_paper": True}


class Sender(runtime.Service):
    name = "sender"
    handshake = False
    subscribe_to: dict[str, list[str]] = {}

    def __init__(self, cfg: config.Config, count: int, rate: float):
        super().__init__(cfg)
        self.total = count
        self.rate = rate
        self.made = 0
        self.t0 = time.monotonic()

    def on_tick(self, now: float) -> None:
        due = self.total if self.rate <= 0 else min(self.total, int((now - self.t0) * self.rate))
        while self.made < due:
            self.persist(*record(self.made))
            self.made += 1

    def ops(self) -> dict:
        return {OP_SENDER_COUNTS.name: self._counts}

    def _counts(self, _args: Any) -> SenderCounts:
        return SenderCounts(self.made, self.total, len(self.outbox), self.outbox.acked, dict(self.outbox.rejected))


def main() -> int:
    count, rate = int(sys.argv[1]), float(sys.argv[2])
    cfg = config.load()
    cfg.path(cfg.run_dir).mkdir(parents=True, exist_ok=True)
    logs.setup("sender", "INFO", "text")
    return Sender(cfg, count, rate).run()


if __name__ == "__main__":
    sys.exit(main())
