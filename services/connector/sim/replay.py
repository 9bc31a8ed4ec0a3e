"""Pure replay arithmetic: CSV rows -> bars, bars -> intra-bar ticks and forming bars, derived series."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CsvBar:
    time: int  # bar open, Unix s UTC
    open: float
    high: float
    low: float
    close: float
    volume: float


def parse_csv(text: str) -> list[CsvBar]:
    lines = [ln for ln in text.splitlines() if ln.strip()]
    header = [h.strip().lower() for h in lines[0].split(",")]
    idx = {name: header.index(name) for name in ("time", "open", "high", "low", "close")}
    vol = header.index("volume") if "volume" in header else None
    out = []
    for ln in lines[1:]:
        f = ln.split(",")
        volume = float(f[vol]) if vol is not None else 0.0
        out.append(
            CsvBar(
                int(float(f[idx["time"]])),
                float(f[idx["open"]]),
                float(f[idx["high"]]),
                float(f[idx["low"]]),
                float(f[idx["close"]]),
                volume,
            )
        )
    return out


def tick_offsets(tf_seconds: int, ticks_per_bar: int) -> list[int]:
    """Second offsets of the ticks inside a bar: the first at the open, all strictly before the close."""
    n = max(4, ticks_per_bar)
    return [k * tf_seconds // n for k in range(n)]


def tick_prices(bar: CsvBar, ticks_per_bar: int) -> list[float]:
    """Prices whose open/max/min/last equal the bar: O, then the extreme nearer the close last, then C."""
    n = max(4, ticks_per_bar)
    path = [bar.open, bar.low, bar.high] if bar.close >= bar.open else [bar.open, bar.high, bar.low]
    # fill extra ticks by repeating inner extremes, ending with the close
    while len(path) < n - 1:
        path.insert(1, path[1])
    return path + [bar.close]


def forming(bar: CsvBar, prices: list[float], k: int) -> CsvBar:
    """The bar as built from ticks 0..k; at the last tick it equals `bar` (volume prorated)."""
    seen = prices[: k + 1]
    n = len(prices)
    return CsvBar(bar.time, seen[0], max(seen), min(seen), seen[-1], round(bar.volume * (k + 1) / n))


def scale(bar: CsvBar, factor: float, digits: int) -> CsvBar:
    return CsvBar(
        bar.time,
        round(bar.open * factor, digits),
        round(bar.high * factor, digits),
        round(bar.low * factor, digits),
        round(bar.close * factor, digits),
        bar.volume,
    )


def shifted(bars: list[CsvBar], index: int, offset: int) -> CsvBar:
    """Bar ``index`` of a series ``offset`` bars ahead of ``bars``: the prices and volume of bar ``index + offset``
    (wrapping around at the end) at bar ``index``'s time, so the clock is the same for every offset."""
    if not offset:
        return bars[index]
    src = bars[(index + offset) % len(bars)]
    return CsvBar(bars[index].time, src.open, src.high, src.low, src.close, src.volume)
