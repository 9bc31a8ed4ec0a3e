"""The simulator's symbols: realistic cTrader specifications (broker-specific in real life).

Only the CSV symbol trades real data; the others replay a series derived from it (their reference price times
the CSV price relative to its first open), which keeps every symbol moving on the same clock.

Synthetic symbols (``synthetic(n, offset_bars)``, off by default) give a benchmark or a test as many tradable
symbols as it wants: SYN01, SYN02, ... are EURUSD-like forex symbols replaying the CSV series at EURUSD's price
level (the CSV's own prices when it holds EURUSD), symbol k ``k * offset_bars`` bars ahead of the clock (wrapping
around at the end of the data), so their bars close at the same moments but differ, and models on them change
position on different bars; ``offset_bars`` 0 gives every one the same series (the aligned worst case).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from services.connector.ctrader.parsing import SymbolSpec


@dataclass(frozen=True)
class SimSymbol:
    spec: SymbolSpec
    spread_points: int
    reference_price: float  # used to derive a series when the CSV is another symbol's
    bar_offset: int = 0  # replays the CSV this many bars ahead of the clock (synthetic symbols)


FOREX_LOT = 10_000_000  # 100 000 units, in cents

CATALOG: dict[str, SimSymbol] = {
    "EURUSD": SimSymbol(
        SymbolSpec(
            1,
            "EURUSD",
            digits=5,
            pip_position=4,
            lot_size=FOREX_LOT,
            min_volume=100_000,
            step_volume=100_000,
            max_volume=10_000_000_000,
            base_asset="EUR",
            quote_asset="USD",
        ),
        spread_points=8,
        reference_price=1.05236,
    ),
    "USDJPY": SimSymbol(
        SymbolSpec(
            4,
            "USDJPY",
            digits=3,
            pip_position=2,
            lot_size=FOREX_LOT,
            min_volume=100_000,
            step_volume=100_000,
            max_volume=10_000_000_000,
            base_asset="USD",
            quote_asset="JPY",
        ),
        spread_points=10,
        reference_price=117.0,
    ),
    "XAUUSD": SimSymbol(
        SymbolSpec(
            41,
            "XAUUSD",
            digits=2,
            pip_position=1,
            lot_size=10_000,
            min_volume=100,
            step_volume=100,
            max_volume=10_000_000,
            base_asset="XAU",
            quote_asset="USD",
        ),
        spread_points=25,
        reference_price=1150.0,
    ),
    "US500": SimSymbol(
        SymbolSpec(
            10,
            "US500",
            digits=2,
            pip_position=0,
            lot_size=100,
            min_volume=10,
            step_volume=10,
            max_volume=1_000_000,
            base_asset="US500",
            quote_asset="USD",
        ),
        spread_points=50,
        reference_price=2250.0,
    ),
}

ASSET_IDS = {"USD": 1, "EUR": 2, "JPY": 3, "XAU": 4, "US500": 5}


SYNTHETIC_FIRST_ID = 1001


def synthetic(count: int, offset_bars: int = 24) -> dict[str, SimSymbol]:
    """``count`` EURUSD-like symbols SYN01.. (ids from 1001), symbol k shifted ``k * offset_bars`` bars."""
    if count < 0 or offset_bars < 0:
        raise ValueError("synthetic symbols: count and offset_bars cannot be negative")
    eurusd = CATALOG["EURUSD"]
    width = max(2, len(str(count)))
    out = {}
    for k in range(1, count + 1):
        name = f"SYN{k:0{width}d}"
        spec = dataclasses.replace(eurusd.spec, symbol_id=SYNTHETIC_FIRST_ID + k - 1, name=name)
        out[name] = dataclasses.replace(eurusd, spec=spec, bar_offset=k * offset_bars)
    return out


def symbols(synthetic_count: int = 0, offset_bars: int = 24) -> dict[str, SimSymbol]:
    """Every symbol a simulator serves: the catalog, then the synthetic ones."""
    return {**CATALOG, **synthetic(synthetic_count, offset_bars)}
