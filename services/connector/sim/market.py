"""The replay cursor: which bar and which tick the simulated market is at, and the prices it implies.

Pure: advanced only by `step()`; the server decides when. Server time = bar open + tick offset (never the
wall clock).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

from services.connector.sim.catalog import SimSymbol
from services.connector.sim.replay import CsvBar, forming, scale, shifted, tick_offsets, tick_prices


@dataclass
class Market:
    bars: list[CsvBar]
    tf_seconds: int
    symbols: dict[int, SimSymbol]  # by symbol id
    source_symbol_id: int  # the symbol whose data the CSV holds
    ticks_per_bar: int = 4
    bar_index: int = 0
    tick_index: int = 0
    _times: list[int] = field(default_factory=list)
    _factors: dict[int, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.bars:
            raise ValueError("no bars to replay")
        self._times = [b.time for b in self.bars]
        first = self.bars[0].open
        self._factors = {
            sid: 1.0 if sid == self.source_symbol_id else s.reference_price / first
            for sid, s in self.symbols.items()
        }
        self._offsets = tick_offsets(self.tf_seconds, self.ticks_per_bar)
        self.bar_index = min(max(self.bar_index, 0), len(self.bars) - 1)

    # ---- cursor
    @property
    def ticks(self) -> int:
        return len(self._offsets)

    @property
    def server_ms(self) -> int:
        return (self.bars[self.bar_index].time + self._offsets[self.tick_index]) * 1000

    @property
    def at_end(self) -> bool:
        return self.bar_index == len(self.bars) - 1 and self.tick_index == self.ticks - 1

    def next_tick_ms(self) -> int | None:
        if self.at_end:
            return None
        if self.tick_index + 1 < self.ticks:
            return (self.bars[self.bar_index].time + self._offsets[self.tick_index + 1]) * 1000
        return self.bars[self.bar_index + 1].time * 1000

    def step(self) -> bool:
        """Advance one tick; True when a new bar started."""
        if self.at_end:
            return False
        if self.tick_index + 1 < self.ticks:
            self.tick_index += 1
            return False
        self.bar_index += 1
        self.tick_index = 0
        return True

    def index_at_or_after(self, time_s: int) -> int:
        return min(bisect.bisect_left(self._times, time_s), len(self.bars) - 1)

    # ---- prices
    def bar(self, symbol_id: int, index: int) -> CsvBar:
        sym = self.symbols[symbol_id]
        return scale(shifted(self.bars, index, sym.bar_offset), self._factors[symbol_id], sym.spec.digits)

    def bid_ask(self, symbol_id: int) -> tuple[float, float]:
        sym = self.symbols[symbol_id]
        bar = self.bar(symbol_id, self.bar_index)
        bid = tick_prices(bar, self.ticks)[self.tick_index]
        return bid, round(bid + sym.spread_points * sym.spec.point, sym.spec.digits)

    def forming_bar(self, symbol_id: int) -> CsvBar:
        bar = self.bar(symbol_id, self.bar_index)
        return forming(bar, tick_prices(bar, self.ticks), self.tick_index)

    def history(self, symbol_id: int, from_s: int, to_s: int, count: int = 0, limit: int = 0) -> list[CsvBar]:
        """Bars with open time in [from_s, to_s] known at the cursor (the last one may be forming)."""
        lo = bisect.bisect_left(self._times, from_s)
        hi = min(bisect.bisect_right(self._times, to_s), self.bar_index + 1)
        if hi <= lo:
            return []
        if count:
            lo = max(lo, hi - count)
        if limit:
            lo = max(lo, hi - limit)
        out = [self.bar(symbol_id, i) for i in range(lo, hi)]
        if hi == self.bar_index + 1:
            out[-1] = self.forming_bar(symbol_id)
        return out
