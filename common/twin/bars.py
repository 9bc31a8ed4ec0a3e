"""Closed bars as the twin holds them: one float64 array of shape (n, 6), oldest first; one bar at a time, the
wire's ``messages.Bar``.

Columns: time (bar open, Unix seconds UTC; exact in float64), open, high, low, close, volume.
Parsing is pure (``parse_bars_csv``); ``load_bars_csv`` is the one function here that reads a file.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from common.messages import Bar  # one Bar: the wire's, the broker port's and the twin's

TIME, OPEN, HIGH, LOW, CLOSE, VOLUME = range(6)
COLUMNS = ("time", "open", "high", "low", "close", "volume")


def bar_row(bar: Bar) -> np.ndarray:
    return np.array([bar.time, bar.open, bar.high, bar.low, bar.close, bar.volume], dtype=np.float64)


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    """Do two bar arrays hold the same float64 bits (NaN equal to itself, -0.0 not 0.0)? As
    ``a.tobytes() == b.tobytes()`` for arrays of one shape, without copying the two arrays to compare them."""
    if a.shape != b.shape:
        return False
    if a.dtype == b.dtype == np.float64 and a.flags.c_contiguous and b.flags.c_contiguous:
        return bool(np.array_equal(a.view(np.int64), b.view(np.int64)))
    return a.tobytes() == b.tobytes()


def bar_at(bars: np.ndarray, i: int) -> Bar:
    """Row ``i`` as a Bar (the twin reads neither its symbol nor its timeframe)."""
    t, o, h, lo, c, v = (float(x) for x in bars[i])
    return Bar("", "", int(t), o, h, lo, c, v)


class BarsCsvError(ValueError):
    """A bars CSV that cannot be read: the message names the row (1 = the first bar, after the header), its line,
    the column and the value."""


def parse_bars_csv(text: str) -> np.ndarray:
    """CSV text with a header naming at least time, open, high, low, close (volume optional, 0 if absent); every
    value a finite number, times strictly increasing. BarsCsvError names what is wrong and where."""
    reader = csv.DictReader(io.StringIO(text))
    header = [h.strip() for h in reader.fieldnames or []]
    if not header:
        raise BarsCsvError("empty: no header line (time,open,high,low,close[,volume])")
    reader.fieldnames = header
    missing = [c for c in COLUMNS[:5] if c not in header]
    if missing:
        raise BarsCsvError(f"the header lacks column(s) {', '.join(missing)} (it has: {', '.join(header)[:200]}; "
                           f"expected time,open,high,low,close[,volume])")
    rows = []
    for n, r in enumerate(reader, start=1):
        row = []
        for c in COLUMNS:
            value = r.get(c)
            if value is None or value == "":
                if c == "volume":  # optional: none is 0
                    row.append(0.0)
                    continue
                raise BarsCsvError(f"row {n} (line {reader.line_num}): column {c} is empty")
            try:
                x = float(value)
            except ValueError:
                raise BarsCsvError(f"row {n} (line {reader.line_num}): column {c}: {value[:40]!r} is not a "
                                   "number") from None
            if not np.isfinite(x):
                raise BarsCsvError(f"row {n} (line {reader.line_num}): column {c}: {value[:40]!r} is not finite")
            row.append(x)
        if rows and row[TIME] <= rows[-1][TIME]:
            raise BarsCsvError(f"row {n} (line {reader.line_num}): time {value_of(row[TIME])} is not after the row "
                               f"before's {value_of(rows[-1][TIME])} (times must be strictly increasing)")
        rows.append(row)
    return np.asarray(rows, dtype=np.float64).reshape(-1, 6)


def value_of(x: float) -> str:
    return str(int(x)) if x.is_integer() else repr(x)


def load_bars_csv(path: str | Path) -> np.ndarray:
    return parse_bars_csv(Path(path).read_text(encoding="utf-8"))
