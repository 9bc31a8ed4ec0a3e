"""The preditor's pure pieces between the twin and the wire: signals, position views, snapshot bytes.

``service.py`` owns the sockets, the clock and the files; everything here is a function of values.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from common import messages
from common.twin.twin import SNAPSHOT_VERSION, Decision, TwinState
from services.preditor.gaps import needs_fill


def signal_of(symbol: str, d: Decision, previous: Decision | None = None, catch_up: bool = False
              ) -> messages.Signal:
    """The signal of decision ``d``; ``previous`` is the twin's decision before it, when the signal goes out as
    it is decided (a signal read back later does not say it); ``catch_up``: a bar that closed while it was down."""
    return messages.Signal(symbol, int(d.bar_time), float(d.close), int(d.action), int(d.direction),
                           int(d.intensity), int(d.hmm_state), float(d.floating_pnl),
                           None if previous is None else int(previous.direction), catch_up)


def twin_bar(bar: messages.Bar) -> messages.Bar:
    """The bar with its numbers as the backtest reads them from its array (an int price on the wire as a float),
    so the twin's arithmetic is the backtest's to the bit (the bar itself when they are so already)."""
    if (type(bar.time) is int and type(bar.open) is float and type(bar.high) is float and type(bar.low) is float
            and type(bar.close) is float and type(bar.volume) is float):
        return bar
    return messages.Bar(bar.symbol, bar.timeframe, int(bar.time), float(bar.open), float(bar.high), float(bar.low),
                        float(bar.close), float(bar.volume))


def history_array(rows: list) -> np.ndarray:
    """A history reply's ``[[time, o, h, l, c, v], ...]`` as the twin's (n, 6) float64 array, oldest first."""
    if not rows:
        return np.empty((0, 6), dtype=np.float64)
    bars = np.asarray([[float(x) for x in r[:6]] for r in rows], dtype=np.float64).reshape(-1, 6)
    if len(bars) > 1 and not np.all(np.diff(bars[:, 0]) > 0):
        raise ValueError("history bars are not strictly increasing in time")
    return bars


def position_view(symbol: str, timeframe: str, state: TwinState) -> messages.VirtualPosition:
    p = state.position
    return messages.VirtualPosition(
        symbol=symbol,
        timeframe=timeframe,
        direction=p.direction,
        intensity=p.intensity,
        entry_price=p.entry_price,
        entry_time=p.entry_time,
        floating_pnl=p.floating_pnl,
        realized_pnl=state.realized_pnl,
        last_bar_time=state.last_bar_time,
        decisions=state.decisions,
    )


# ---- snapshots ------------------------------------------------------------------------------------------


# ``json.dumps(x, allow_nan=False, separators=(",", ":"))`` without making an encoder at each call (it runs for every
# twin at every bar): the same text (Python's float repr round-trips every float64 exactly)
to_json = json.JSONEncoder(allow_nan=False, separators=(",", ":")).encode


def snapshot_name(symbol: str, timeframe: str) -> str:
    return f"{symbol}_{timeframe}.twin.json"


def snapshot_bytes(state: TwinState) -> bytes:
    """JSON (Python's float repr round-trips every float64 exactly)."""
    return to_json(state.to_dict()).encode("utf-8")


def _row_text(row: list[float]) -> str:
    """One window bar as ``snapshot_bytes`` writes it (``[time, o, h, l, c, v]``, time as an int)."""
    return to_json([int(row[0]), *row[1:]])


def rows_text(bars: np.ndarray) -> list[str]:
    return [_row_text(r) for r in bars.tolist()]


class SnapshotEncoder:
    """``snapshot_bytes`` for one twin's successive states, the same bytes, reusing the text of the window bars
    it encoded before: the window slides by a bar or a few between two snapshots, so only the new bars' rows are
    encoded (the bars are ~95 % of the file and of its encoding time). A reused row is one whose float64 bits
    equal the bar encoded before at that time; anything else is encoded afresh."""

    def __init__(self) -> None:
        self._bars = np.empty((0, 6))
        self._rows: list[str] = []

    def encode(self, state: TwinState) -> bytes:
        bars = state.bars
        rows = self._reused_rows(bars)
        rows += [_row_text(r) for r in bars[len(rows):].tolist()]
        self._bars, self._rows = bars.copy(), rows  # a copy: the next comparison must see these bits
        head = json.dumps({"version": SNAPSHOT_VERSION, "model_id": state.model_id}, separators=(",", ":"))
        tail = to_json(state.to_dict_after_bars())
        return f'{head[:-1]},"bars":[{",".join(rows)}],{tail[1:]}'.encode()

    def _reused_rows(self, bars: np.ndarray) -> list[str]:
        """The encoded rows of the leading bars of ``bars`` that were in the previous window, bit for bit."""
        old = self._bars
        if not len(old) or not len(bars):
            return []
        start = int(np.searchsorted(old[:, 0], bars[0, 0]))
        n = min(len(old) - start, len(bars))
        if n <= 0 or old[start:start + n].tobytes() != bars[:n].tobytes():
            return []
        return self._rows[start:start + n]


@dataclass(frozen=True)
class Restored:
    state: TwinState | None  # None: start flat
    why: str  # what happened, for the log and the status


def snapshot_dict(raw: bytes | None) -> dict | str | None:
    """A snapshot file's bytes decoded (a str: why they cannot be)."""
    if raw is None:
        return None
    try:
        return json.loads(raw.decode("utf-8"))
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        return str(exc)


def restore(saved: bytes | dict | str | None, model_id: str) -> Restored:
    """The snapshot's state (its bytes, or ``snapshot_dict``'s) when it belongs to ``model_id``; otherwise None
    with the reason."""
    if isinstance(saved, bytes):
        saved = snapshot_dict(saved)
    if saved is None:
        return Restored(None, "no snapshot")
    try:
        if isinstance(saved, str):
            raise ValueError(saved)
        state = TwinState.from_dict(saved, model_id=model_id)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        return Restored(None, f"snapshot discarded: {exc}")
    return Restored(state, f"snapshot restored at bar {state.last_bar_time}")


def covers(history: np.ndarray, state: TwinState, tf_s: int) -> bool:
    """Does ``history`` continue ``state`` without a hole? (it starts at or before the state's last bar, or right
    after it, or after a weekly close)"""
    if state.last_bar_time is None or len(history) == 0:
        return True
    return not needs_fill(state.last_bar_time, int(history[0, 0]), tf_s)
