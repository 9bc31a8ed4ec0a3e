"""Event records: the known event types and a builder. Pure.

`event_type` is free UPPER_SNAKE text (so a new kind needs no migration); these are the ones the
system writes. Put the details in `data` (a JSON object).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from common.records.schema import Event, validate

SESSION_STARTED = "SESSION_STARTED"
SESSION_RECOVERED = "SESSION_RECOVERED"  # a session left RUNNING by a crash was resumed
SESSION_ENDED = "SESSION_ENDED"
WATCHDOG_RESTART = "WATCHDOG_RESTART"  # data: service, reason, restarts_in_window
HALT = "HALT"  # data: reason, service
RESUME = "RESUME"
RECOVERY = "RECOVERY"  # a service came back: data: service, old_epoch, new_epoch, steps replayed
ORPHAN_POSITION = "ORPHAN_POSITION"  # data: position_id, symbol, volume, side
CONFIG_CHANGE = "CONFIG_CHANGE"  # data: key, old, new (secrets never included)
ERROR = "ERROR"
ALERT = "ALERT"

KNOWN = (SESSION_STARTED, SESSION_RECOVERED, SESSION_ENDED, WATCHDOG_RESTART, HALT, RESUME, RECOVERY,
         ORPHAN_POSITION, CONFIG_CHANGE, ERROR, ALERT)

# Fixed namespace for ids derived from other ids (uuid5): a retried or replayed decision yields the same
# ids, so the store deduplicates it.
NAMESPACE = uuid.UUID("6f1c7c1e-2d0a-4a51-9d8e-5b3f0c6a7e21")


def derived_id(parent: object, label: str) -> uuid.UUID:
    return uuid.uuid5(NAMESPACE, f"{parent}:{label}")


def make_event(
    event_id: uuid.UUID,
    now: datetime,
    event_type: str,
    *,
    session_id: str | None = None,
    severity: str = "INFO",
    source: str | None = None,
    symbol: str | None = None,
    message: str | None = None,
    data: Mapping[str, Any] | None = None,
) -> Event:
    return validate("events", {  # type: ignore[return-value]
        "id": event_id, "timestamp": now, "event_type": event_type, "session_id": session_id,
        "severity": severity, "source": source, "symbol": symbol, "message": message, "data": dict(data or {}),
    })
