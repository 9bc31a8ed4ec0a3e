"""common/records/schema.py's time text (`format_ts`): fixed-width UTC, and its kept texts never change a result."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from common.records import schema as rec


def _uncached(value: datetime) -> str:
    return rec._format_ts(value)


def test_the_same_instant_gives_one_text_whatever_its_offset_or_the_order():
    utc = datetime(2026, 1, 2, 3, 4, 5, 60, tzinfo=UTC)
    paris = utc.astimezone(timezone(timedelta(hours=1)))
    behind = utc.astimezone(timezone(timedelta(hours=-7, minutes=-30)))
    rec._TS_TEXTS.clear()
    for value in (paris, utc, behind, paris):
        assert rec.format_ts(value) == "2026-01-02T03:04:05.000060Z"


def test_a_naive_time_is_refused_even_when_the_same_wall_time_was_formatted_aware():
    aware = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert rec.format_ts(aware) == "2026-01-02T03:04:05.000000Z"
    with pytest.raises(ValueError, match="timezone-aware"):
        rec.format_ts(aware.replace(tzinfo=None))


def test_kept_texts_are_bounded_and_equal_to_the_computed_ones():
    start = datetime(999, 12, 31, 23, 0, tzinfo=UTC)  # before year 1000 too (strftime's path)
    values = [start + timedelta(minutes=7 * i, microseconds=i) for i in range(3 * rec._TS_TEXTS_MAX)]
    for _ in range(2):
        for v in values:
            assert rec.format_ts(v) == _uncached(v)
            assert len(rec._TS_TEXTS) <= rec._TS_TEXTS_MAX
