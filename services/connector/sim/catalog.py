"""The simulator's symbols: realistic cTrader specifications (broker-specific in real life).

Only the CSV symbol trades real data; the others replay a series derived from it (their reference price times
the CSV price relative to its first open), which keeps every symbol moving on the same clock.
"""

from __future__ import annotations

from dataclasses import dataclass

from services.connector.units import SymbolSpec


@dataclass(frozen=True)
class SimSymbol:
    spec: SymbolSpec
    spread_points: int
    reference_price: float  # used to derive a series when the CSV is another symbol's


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
