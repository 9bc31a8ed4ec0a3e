"""Helper process for the persistence service tests: a real service that persists a stream of records through
`Service.persist` (the runtime's outbox: kept until acknowledged, retried with the same ids).

usage: python pers_sender.py COUNT RATE [UPTO]   (ORACLE_HOME set; records per second, 0 = as fast as possible;
UPTO: it makes no record past the first UPTO until its op `sender_allow` lets it, default COUNT)

Even records are `events` (the fields any sender uses, no session_id), odd ones `trades` without a session_id.
Its op `sender_counts` (registered by this process only) reports made, pending, acked and rejected; `sender_allow`
moves its limit (a test holds the stream where it needs it, whatever the machine's load); its `status` is the common
part every process has. It does no handshake (no orchestrator).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from common import config, logs, messages, roles, runtime
from common.outbox import record_id
from common.schema import check


@dataclass(frozen=True, slots=True)
class SenderCounts:
    made: int
    total: int
    pending: int
    acked: int
    rejected: dict  # id -> why persistence refused it


@dataclass(frozen=True, slots=True)
class SenderAllow:
    upto: int = field(metadata=check(ge=0))  # the sender makes records up to this many (at its rate from now on)


OP_SENDER_COUNTS = messages.op("sender_counts", messages.NoArgs, SenderCounts, "test sender: its records' counts")
OP_SENDER_ALLOW = messages.op("sender_allow", SenderAllow, SenderCounts, "test sender: make records up to upto")
roles.declare(OP_SENDER_COUNTS.name, roles.ANY)
roles.declare(OP_SENDER_ALLOW.name, roles.ANY)


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

    def __init__(self, cfg: config.Config, count: int, rate: float, upto: int):
        super().__init__(cfg)
        self.total = count
        self.rate = rate
        self.upto = min(upto, count)
        self.made = 0
        self.t0 = time.monotonic()

    def on_tick(self, now: float) -> None:
        due = self.upto if self.rate <= 0 else min(self.upto, int((now - self.t0) * self.rate))
        while self.made < due:
            self.persist(*record(self.made))
            self.made += 1

    def ops(self) -> dict:
        return {OP_SENDER_COUNTS.name: self._counts, OP_SENDER_ALLOW.name: self._allow}

    def _allow(self, args: SenderAllow) -> SenderCounts:
        if self.rate > 0:  # the records past the old limit come at the rate from now, not in a burst
            self.t0 = time.monotonic() - self.made / self.rate
        self.upto = min(args.upto, self.total)
        return self._counts(None)

    def _counts(self, _args: Any) -> SenderCounts:
        return SenderCounts(self.made, self.total, len(self.outbox), self.outbox.acked, dict(self.outbox.rejected))


def main() -> int:
    count, rate = int(sys.argv[1]), float(sys.argv[2])
    upto = int(sys.argv[3]) if len(sys.argv) > 3 else count
    cfg = config.load()
    cfg.path(cfg.run_dir).mkdir(parents=True, exist_ok=True)
    logs.setup("sender", "INFO", "text")
    return Sender(cfg, count, rate, upto).run()


if __name__ == "__main__":
    sys.exit(main())
