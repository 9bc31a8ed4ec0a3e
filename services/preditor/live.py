"""The preditor's pure pieces between the twin and the wire: signals, position views, snapshot bytes.

``service.py`` owns the sockets, the clock and the files; everything here is a function of values.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import orjson

from common import messages
from common.twin.bars import same_bits
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


# ``json.dumps(x, allow_nan=False, separators=(",", ":"))`` without making an encoder at each call: the slow path of
# ``dumps`` (Python's float repr round-trips every float64 exactly)
to_json = json.JSONEncoder(allow_nan=False, separators=(",", ":")).encode


def _float_sum(obj: object) -> float:
    """The sum of the floats in ``obj`` (maps, lists and tuples walked): NaN or infinite when one of them is."""
    t = type(obj)
    if t is float:
        return obj  # type: ignore[return-value]
    if t is dict:
        obj = obj.values()  # type: ignore[attr-defined]
    elif t is not list and t is not tuple:
        return 0.0
    total = 0.0
    for v in obj:  # type: ignore[attr-defined]
        tv = type(v)
        if tv is float:
            total += v
        elif tv is list or tv is tuple:
            try:
                total += sum(v)  # a list of numbers (an observation, a bar): summed in C
            except (TypeError, OverflowError):  # something else in it, or an int too large for a float
                total += _float_sum(v)
        elif tv is dict:
            total += _float_sum(v)
    return total


def dumps(obj: object) -> bytes:
    """``to_json(obj)``'s JSON as UTF-8 bytes, by orjson (~20x faster: the float repr dominates a snapshot's cost).
    orjson writes the shortest text that reads back as the same float64 (as Python's repr), so every number reads
    back bit for bit; but it writes NaN and infinities as null, and refuses a float subclass or an int beyond 64
    bits: such a value (a sum of the floats not finite, which an overflow of the sum may also give) goes the slow
    way, ``to_json``, which refuses a NaN (ValueError) as before."""
    total = _float_sum(obj)
    if total - total == 0.0:
        try:
            return orjson.dumps(obj)
        except orjson.JSONEncodeError:
            pass
    return to_json(obj).encode("utf-8")


def snapshot_name(symbol: str, timeframe: str) -> str:
    return f"{symbol}_{timeframe}.twin.json"


def snapshot_bytes(state: TwinState) -> bytes:
    """JSON (every float64 reads back bit for bit: ``dumps``)."""
    return dumps(state.to_dict())


def _row_json(row: list[float]) -> bytes:
    """One window bar as ``snapshot_bytes`` writes it (``[time, o, h, l, c, v]``, time as an int)."""
    return dumps([int(row[0]), *row[1:]])


def rows_json(bars: np.ndarray) -> list[bytes]:
    return [_row_json(r) for r in bars.tolist()]


class SnapshotEncoder:
    """``snapshot_bytes`` for one twin's successive states, the same bytes, reusing the text of the window bars
    it encoded before: the window slides by a bar or a few between two snapshots, so only the new bars' rows are
    encoded (the bars are ~95 % of the file and of its encoding time). A reused row is one whose float64 bits
    equal the bar encoded before at that time; anything else is encoded afresh."""

    def __init__(self) -> None:
        self._bars = np.empty((0, 6))
        self._rows: list[bytes] = []

    def encode(self, state: TwinState) -> bytes:
        bars = state.bars
        rows = self._reused_rows(bars)
        rows += [_row_json(r) for r in bars[len(rows):].tolist()]
        self._bars, self._rows = bars.copy(), rows  # a copy: the next comparison must see these bits
        head = dumps({"version": SNAPSHOT_VERSION, "model_id": state.model_id})
        tail = dumps(state.to_dict_after_bars())
        return b"".join((head[:-1], b',"bars":[', b",".join(rows), b"],", tail[1:]))

    def _reused_rows(self, bars: np.ndarray) -> list[bytes]:
        """The encoded rows of the leading bars of ``bars`` that were in the previous window, bit for bit."""
        old = self._bars
        if not len(old) or not len(bars):
            return []
        start = int(np.searchsorted(old[:, 0], bars[0, 0]))
        n = min(len(old) - start, len(bars))
        if n <= 0 or not same_bits(old[start:start + n], bars[:n]):
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
