"""When does a closed bar follow missing bars? (pure)

A bar whose open time is more than one timeframe after the twin's last bar either follows a market close (the
weekend, when no bar exists) or follows bars the preditor never received (lost messages, a restarted connector, a
holiday the broker may or may not have bars for). The preditor asks the connector's history for the bars in between
unless every missing slot lies in the weekly FX close; asking when nothing is missing costs one request and returns
no bar, so every doubtful case asks.

The weekly close, in UTC bar open times: from Friday 21:00 (the last H1 bar opens at 20:00 in northern summer,
21:00 in winter) to Sunday 23:00 (the first bar opens at 21:00, 22:00 or 23:00). A D1 or H4 feed has its own
slots; the same window applies to each missing slot.
"""

from __future__ import annotations

DAY = 86_400
WEEK = 7 * DAY
_MONDAY_OFFSET = 3 * DAY  # 1970-01-01 was a Thursday: (t + 3 days) % week counts from Monday 00:00
CLOSE_START = 4 * DAY + 21 * 3600  # Friday 21:00 UTC, seconds after Monday 00:00
CLOSE_END = 6 * DAY + 23 * 3600  # Sunday 23:00 UTC


def week_seconds(t: int) -> int:
    """Seconds since the Monday 00:00 UTC before ``t``."""
    return (t + _MONDAY_OFFSET) % WEEK


def in_weekly_close(t: int) -> bool:
    return CLOSE_START <= week_seconds(t) < CLOSE_END


def missing_slots(last: int, t: int, tf_s: int) -> range:
    """Open times of the bars a continuous feed would have had strictly between ``last`` and ``t``."""
    return range(last + tf_s, t, tf_s)


def needs_fill(last: int | None, t: int, tf_s: int) -> bool:
    """True when the bar at ``t`` may follow bars the twin has not seen (ask history before predicting)."""
    if last is None or t - last <= tf_s:
        return False
    return not all(in_weekly_close(s) for s in missing_slots(last, t, tf_s))
