"""Record factories shared by the persistence tests."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

T0 = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)


def trade_record(i: int = 0, **over: object) -> dict[str, object]:
    base: dict[str, object] = {
        "id": str(uuid.uuid4()), "session_id": "abcd1234", "timestamp": T0.replace(minute=i % 60),
        "symbol": "EURUSD", "direction": 1, "intensity": 2, "action": "CLOSE", "volume": 0.1,
        "entry_price": 1.1, "exit_price": 1.1012, "pnl": 12.0 + i, "pnl_pips": 12.0, "commission": 0.7,
        "hmm_state": 3, "is_paper": bool(i % 2),
    }
    base.update(over)
    return base


def event_record(i: int = 0, **over: object) -> dict[str, object]:
    base: dict[str, object] = {
        "id": str(uuid.uuid4()), "session_id": "abcd1234", "timestamp": T0, "event_type": "WATCHDOG_RESTART",
        "severity": "WARNING", "source": "orchestrator", "data": {"service": "preditor", "n": i},
    }
    base.update(over)
    return base
