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


def bar_at(bars: np.ndarray, i: int) -> Bar:
    """Row ``i`` as a Bar (the twin reads neither its symbol nor its timeframe)."""
    t, o, h, lo, c, v = (float(x) for x in bars[i])
    return Bar("", "", int(t), o, h, lo, c, v)


def parse_bars_csv(text: str) -> np.ndarray:
    """CSV text with a header naming at least time, open, high, low, close (volume optional, 0 if absent)."""
    reader = csv.DictReader(io.StringIO(text))
    header = reader.fieldnames or []
    missing = [c for c in COLUMNS[:5] if c not in header]
    if missing:
        raise ValueError(f"CSV lacks columns {missing}")
    rows = [[float(r[c]) if c in r and r[c] not in (None, "") else 0.0 for c in COLUMNS] for r in reader]
    bars = np.asarray(rows, dtype=np.float64).reshape(-1, 6)
    if len(bars) > 1 and not np.all(np.diff(bars[:, TIME]) > 0):
        raise ValueError("bar times must be strictly increasing")
    return bars


def load_bars_csv(path: str | Path) -> np.ndarray:
    return parse_bars_csv(Path(path).read_text(encoding="utf-8"))
