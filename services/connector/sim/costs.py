"""What trading costs on the simulated account, as cTrader charges it (pure: prices and rates are passed in).

- Commission, per side, on the opening and on the closing deal, by the symbol's ``commissionType``:
  USD per million USD of notional (forex), USD per lot, quote currency per lot, or a percentage of the notional;
  never less than the symbol's minimum. The opening's commission is shown on the position; the balance moves at
  the close by the closed part's gross PnL + swap + commission (both sides).
- Swap, at each rollover the position is open over: ``swapTime`` (minutes after 00:00 UTC, every ``swapPeriod``
  hours, daily by default); in PIPS (``swapLong``/``swapShort`` pips per unit of volume, signed: negative is a
  charge) or PERCENTAGE (annual percent of the notional, over 360 days); tripled on ``swapRollover3Days``; none on
  Saturday and Sunday unless ``chargeSwapAtWeekends``.
- Conversion: a chain of symbols from one asset to another (``ProtoOASymbolsForConversionReq``), shortest first.
"""

from __future__ import annotations

import datetime as dt
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

USD_PER_MILLION_USD, USD_PER_LOT, PERCENTAGE_OF_VALUE, QUOTE_CCY_PER_LOT = 1, 2, 3, 4  # ProtoOACommissionType
SWAP_PIPS, SWAP_PERCENTAGE = 0, 1  # ProtoOASwapCalculationType
SATURDAY, SUNDAY = 6, 7  # ProtoOADayOfWeek = ISO weekday


@dataclass(frozen=True)
class CommissionSpec:
    kind: int = USD_PER_MILLION_USD
    rate: float = 0.0  # in the kind's unit: USD per million, USD or quote currency per lot, percent of notional
    minimum: float = 0.0  # per deal
    minimum_in_quote: bool = False  # the minimum is in the quote currency (else USD)

    @property
    def precise_rate(self) -> int:
        """``preciseTradingCommissionRate``: x 10^5 for a percentage, x 10^8 otherwise."""
        return round(self.rate * (100_000 if self.kind == PERCENTAGE_OF_VALUE else 100_000_000))

    @property
    def precise_minimum(self) -> int:
        return round(self.minimum * 100_000_000)


@dataclass(frozen=True)
class SwapSpec:
    long: float = 0.0
    short: float = 0.0
    kind: int = SWAP_PIPS
    triple_day: int = 3  # Wednesday
    time_min: int = 22 * 60  # minutes after 00:00 UTC
    period_h: int = 24
    charge_weekends: bool = False


def commission(spec: CommissionSpec, lots: float, units: float, price: float, quote_to_deposit: float,
               usd_to_deposit: float, quote_to_usd: float) -> float:
    """The commission of one deal, in the deposit currency (a positive amount, charged)."""
    if spec.kind == USD_PER_MILLION_USD:
        amount = units * price * quote_to_usd / 1_000_000 * spec.rate * usd_to_deposit
    elif spec.kind == USD_PER_LOT:
        amount = lots * spec.rate * usd_to_deposit
    elif spec.kind == QUOTE_CCY_PER_LOT:
        amount = lots * spec.rate * quote_to_deposit
    elif spec.kind == PERCENTAGE_OF_VALUE:
        amount = units * price * quote_to_deposit * spec.rate / 100
    else:
        raise ValueError(f"unknown commission type {spec.kind}")
    minimum = spec.minimum * (quote_to_deposit if spec.minimum_in_quote else usd_to_deposit)
    return max(amount, minimum)


def rollovers(t0: float, t1: float, spec: SwapSpec) -> list[tuple[int, int]]:
    """The rollover instants in (t0, t1] (Unix s) with their multiplier (0 on a weekend day, 3 on the triple day)."""
    period = spec.period_h * 3600
    first = int(t0 // 86_400 * 86_400) + spec.time_min * 60
    while first > t0:
        first -= period
    out = []
    t = first + period
    while t <= t1:
        weekday = dt.datetime.fromtimestamp(t, dt.UTC).isoweekday()
        weekend = weekday in (SATURDAY, SUNDAY) and not spec.charge_weekends
        out.append((t, 0 if weekend else (3 if weekday == spec.triple_day else 1)))
        t += period
    return out


def next_rollover(t0: float, spec: SwapSpec) -> int:
    """The first rollover instant after t0 (Unix s), whatever its multiplier (`rollovers`' first)."""
    return rollovers(t0, t0 + spec.period_h * 3600, spec)[0][0]


def swap(spec: SwapSpec, side: int, units: float, pip_size: float, price: float, quote_to_deposit: float,
         multiplier: int) -> float:
    """One rollover's swap, in the deposit currency, signed (negative: charged)."""
    rate = spec.long if side > 0 else spec.short
    if spec.kind == SWAP_PIPS:
        return rate * pip_size * units * quote_to_deposit * multiplier
    return units * price * quote_to_deposit * rate / 100 / 360 * multiplier


def conversion_chain(pairs: Iterable[tuple[str, str, str]], first: str, last: str) -> list[str]:
    """The shortest chain of symbols (name, base, quote) converting asset `first` into `last` ([] when equal or
    when none exists)."""
    by_asset: dict[str, list[tuple[str, str]]] = {}
    for name, base, quote in pairs:
        by_asset.setdefault(base, []).append((name, quote))
        by_asset.setdefault(quote, []).append((name, base))
    seen, queue = {first}, deque([(first, [])])
    while queue:
        asset, path = queue.popleft()
        if asset == last:
            return path
        for name, other in sorted(by_asset.get(asset, [])):
            if other not in seen:
                seen.add(other)
                queue.append((other, [*path, name]))
    return []
