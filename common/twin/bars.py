"""Closed bars as the twin holds them: one float64 array of shape (n, 6), oldest first.

Columns: time (bar open, Unix seconds UTC; exact in float64), open, high, low, close, volume.
Parsing is pure (``parse_bars_csv``); ``load_bars_csv`` is the one function here that reads a file.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

TIME, OPEN, HIGH, LOW, CLOSE, VOLUME = range(6)
COLUMNS = ("time", "open", "high", "low", "close", "volume")


@dataclass(frozen=True)
class Bar:
    time: int
    open: float
    high: float
    low: float
    close: float
    volume: float = 0.0

    def row(self) -> np.ndarray:
        return np.array([self.time, self.open, self.high, self.low, self.close, self.volume], dtype=np.float64)


def bar_at(bars: np.ndarray, i: int) -> Bar:
    t, o, h, lo, c, v = (float(x) for x in bars[i])
    return Bar(int(t), o, h, lo, c, v)


def bars_array(bars: list[Bar]) -> np.ndarray:
    if not bars:
        return np.empty((0, 6), dtype=np.float64)
    return np.stack([b.row() for b in bars])


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
