"""The simulator's symbols: realistic cTrader specifications and trading calendars (broker-specific in real life).

Only the CSV symbol trades real data. Every other symbol replays a series derived from it: its reference price
times the CSV price relative to the CSV's first open, shifted by its own number of bars (``bar_offset``: symbol
bar i has the prices of CSV bar i + offset, wrapping around at the end of the data, at bar i's time), so all of them
move on the same clock but not in lock-step. The CSV symbol itself is never shifted (its offset is ignored).

Synthetic symbols (``synthetic(n, offset_bars)``, off by default) give a benchmark or a test as many tradable
symbols as it wants: SYN01, SYN02, ... are EURUSD-like forex symbols replaying the CSV series at EURUSD's price
level (the CSV's own prices when it holds EURUSD), symbol k ``k * offset_bars`` bars ahead of the clock, so their
bars close at the same moments but differ, and models on them change position on different bars; ``offset_bars``
0 gives every one the same series (the aligned worst case).

Costs (costs.py, served in `ProtoOASymbol`): forex 30 USD per million USD of notional a side, swaps in pips a day;
gold 7 USD a lot a side; the index 0.0025 % of the notional a side and annual-percentage swaps; rollover at
22:00 UTC, tripled on Wednesday (the index: Friday), none on weekends. Minimum stop distances: a pip (forex),
50 points (gold), 100 points (the index).

Calendars (`services/connector/calendar.py`, served in `ProtoOASymbol.schedule`, `holiday`, `scheduleTimeZone`):
- forex: New York 17:00 Sunday to 17:00 Friday (22:00 UTC in winter, 21:00 UTC in summer), plus what the bundled
  2017 data shows at Christmas: Monday 25 December closed 03:00-17:00 New York (every year) and the Sunday
  24 December 2017 opening an hour late (18:00 New York);
- XAUUSD: the forex week with a daily break 17:00-18:00 New York (so it opens on Sunday at 18:00), forex holidays;
- US500: a CME-like equity index week: Sunday 18:00 to Friday 16:15 New York, a daily halt 16:15-16:30 and a daily
  break 17:00-18:00; closed on Christmas Day (every year), Good Friday 2017, and from 13:00 on 4 July 2017.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass

from services.connector.calendar import FRI, SUN, TradingCalendar, at, clock, days_since_epoch
from services.connector.calendar import Holiday as CalendarHoliday
from services.connector.ctrader.parsing import SymbolSpec
from services.connector.sim.costs import (
    PERCENTAGE_OF_VALUE,
    SWAP_PERCENTAGE,
    USD_PER_LOT,
    USD_PER_MILLION_USD,
    CommissionSpec,
    SwapSpec,
)

NEW_YORK = "America/New_York"


def _holiday(day: dt.date, name: str, start: int | None = None, end: int | None = None,
             recurring: bool = False) -> CalendarHoliday:
    return CalendarHoliday(days_since_epoch(day), recurring, start, end, NEW_YORK, name)


FOREX_HOLIDAYS = (
    _holiday(dt.date(2017, 12, 25), "Christmas Day", clock(3), clock(17), recurring=True),
    _holiday(dt.date(2017, 12, 24), "Christmas Eve 2017: late open", clock(17), clock(18)),
)
FOREX = TradingCalendar.of(NEW_YORK, [(at(SUN, 17), at(FRI, 17))], FOREX_HOLIDAYS)
METALS = TradingCalendar.of(NEW_YORK, [(at(d, 18), at(d + 1, 17)) for d in range(SUN, FRI)], FOREX_HOLIDAYS)
US_INDEX = TradingCalendar.of(
    NEW_YORK,
    [(at(d, 18), at(d + 1, 16, 15)) for d in range(SUN, FRI)] + [(at(d, 16, 30), at(d, 17)) for d in range(1, FRI)],
    (
        _holiday(dt.date(2017, 12, 25), "Christmas Day", recurring=True),
        _holiday(dt.date(2017, 4, 14), "Good Friday 2017"),
        _holiday(dt.date(2017, 7, 4), "Independence Day 2017: early close", clock(13), clock(18)),
    ),
)


FOREX_COMMISSION = CommissionSpec(USD_PER_MILLION_USD, 30.0)  # 3 USD a side for 100 000 USD of notional


@dataclass(frozen=True)
class SimSymbol:
    spec: SymbolSpec
    spread_points: int
    reference_price: float  # the derived series' price level (the CSV's first open maps to it)
    bar_offset: int = 0  # replays the CSV this many bars ahead of the clock (derived symbols)
    calendar: TradingCalendar = FOREX
    commission: CommissionSpec = FOREX_COMMISSION
    swap: SwapSpec = SwapSpec(-0.75, 0.25)  # pips a day on a long / a short (negative: charged)


FOREX_LOT = 10_000_000  # 100 000 units, in cents


def _forex(symbol_id: int, name: str, digits: int, spread_points: int, reference_price: float,
           bar_offset: int, swap: SwapSpec) -> SimSymbol:
    return SimSymbol(
        SymbolSpec(
            symbol_id,
            name,
            digits=digits,
            pip_position=digits - 1,
            lot_size=FOREX_LOT,
            min_volume=100_000,
            step_volume=100_000,
            max_volume=10_000_000_000,
            base_asset=name[:3],
            quote_asset=name[3:],
            sl_distance=10,  # points: a stop loss or take profit at least a pip from the market
            tp_distance=10,
        ),
        spread_points=spread_points,
        reference_price=reference_price,
        bar_offset=bar_offset,
        swap=swap,
    )


CATALOG: dict[str, SimSymbol] = {
    "EURUSD": _forex(1, "EURUSD", 5, 8, 1.05236, 0, SwapSpec(-0.75, 0.25)),
    "GBPUSD": _forex(2, "GBPUSD", 5, 12, 1.23420, 7, SwapSpec(-0.5, -0.3)),
    "EURJPY": _forex(3, "EURJPY", 3, 15, 122.950, 13, SwapSpec(0.3, -0.9)),
    "USDJPY": _forex(4, "USDJPY", 3, 10, 117.0, 3, SwapSpec(0.6, -1.2)),
    "EURGBP": _forex(9, "EURGBP", 5, 10, 0.85270, 19, SwapSpec(-0.6, 0.1)),
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
            sl_distance=50,
            tp_distance=50,
        ),
        spread_points=25,
        reference_price=1150.0,
        bar_offset=5,
        calendar=METALS,
        commission=CommissionSpec(USD_PER_LOT, 7.0),
        swap=SwapSpec(-2.5, 0.9),
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
            sl_distance=100,
            tp_distance=100,
        ),
        spread_points=50,
        reference_price=2250.0,
        bar_offset=11,
        calendar=US_INDEX,
        commission=CommissionSpec(PERCENTAGE_OF_VALUE, 0.0025),
        swap=SwapSpec(-3.0, 0.5, kind=SWAP_PERCENTAGE, triple_day=5),  # annual %, tripled on Friday
    ),
}

ASSET_IDS = {"USD": 1, "EUR": 2, "JPY": 3, "XAU": 4, "US500": 5, "GBP": 6}


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
