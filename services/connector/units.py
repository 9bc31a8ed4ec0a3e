"""Every cTrader Open API unit conversion, in one pure module.

Wire facts (see shared/reference/connector.md section 4):
- spot bid/ask, trendbar low and deltas, relative SL/TP: integers in 1/100000 of a price unit,
  whatever the digits;
- position/order/deal prices and absolute SL/TP: plain doubles, never rescaled;
- volumes: integers in cents of a unit (0.01 unit); lots = volume / lotSize;
- money: integers scaled by 10**moneyDigits;
- timestamps: Unix milliseconds; trendbar time: minutes; leverage: leverageInCents.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

PRICE_SCALE = 100_000
VOLUME_SCALE = 100  # protocol volume is in cents of a unit


@dataclass(frozen=True)
class SymbolSpec:
    """A symbol's trading specification, in wire units (volumes in cents)."""

    symbol_id: int
    name: str
    digits: int
    pip_position: int
    lot_size: int
    min_volume: int
    step_volume: int
    max_volume: int
    base_asset: str = ""
    quote_asset: str = ""

    @property
    def point(self) -> float:
        return point_size(self.digits)

    @property
    def pip(self) -> float:
        return pip_size(self.pip_position)

    @property
    def min_lots(self) -> float:
        return volume_to_lots(self.min_volume, self.lot_size)

    @property
    def step_lots(self) -> float:
        return volume_to_lots(self.step_volume, self.lot_size)

    @property
    def max_lots(self) -> float:
        return volume_to_lots(self.max_volume, self.lot_size)


# ---- prices


def point_size(digits: int) -> float:
    return 10.0**-digits


def pip_size(pip_position: int) -> float:
    return 10.0**-pip_position


def round_price(price: float, digits: int) -> float:
    return round(price, digits)


def price_from_wire(value: int, digits: int | None = None) -> float:
    """Spot/trendbar integer (1/100000) -> price, rounded to the symbol's digits when given."""
    price = value / PRICE_SCALE
    return round(price, digits) if digits is not None else price


def price_to_wire(price: float) -> int:
    return round(price * PRICE_SCALE)


def trendbar_prices(
    low: int, delta_open: int, delta_high: int, delta_close: int, digits: int | None = None
) -> tuple[float, float, float, float]:
    """Trendbar wire fields -> (open, high, low, close)."""
    return (
        price_from_wire(low + delta_open, digits),
        price_from_wire(low + delta_high, digits),
        price_from_wire(low, digits),
        price_from_wire(low + delta_close, digits),
    )


def trendbar_wire(open_: float, high: float, low: float, close: float) -> tuple[int, int, int, int]:
    """(open, high, low, close) -> (low, deltaOpen, deltaHigh, deltaClose) in 1/100000."""
    lo = price_to_wire(low)
    return lo, price_to_wire(open_) - lo, price_to_wire(high) - lo, price_to_wire(close) - lo


# ---- relative SL/TP


def relative_from_distance(distance: float, digits: int) -> int:
    """A positive price distance -> relative SL/TP in 1/100000, rounded to the symbol's precision.

    The result is a multiple of 10**(5 - digits) (one point), never zero for a positive distance.
    """
    if distance <= 0:
        raise ValueError(f"distance must be positive, got {distance}")
    step = 10 ** max(0, 5 - digits)
    rel = round(distance * PRICE_SCALE / step) * step
    return max(rel, step)


def distance_from_relative(relative: int) -> float:
    return relative / PRICE_SCALE


def sl_tp_prices(
    entry: float, side: int, relative_sl: int | None, relative_tp: int | None, digits: int
) -> tuple[float | None, float | None]:
    """Absolute SL/TP implied by relative distances around an entry (side +1 long, -1 short)."""
    sl = round(entry - side * relative_sl / PRICE_SCALE, digits) if relative_sl else None
    tp = round(entry + side * relative_tp / PRICE_SCALE, digits) if relative_tp else None
    return sl, tp


def pips_to_distance(pips: float, pip_position: int) -> float:
    return pips * pip_size(pip_position)


def distance_to_pips(distance: float, pip_position: int) -> float:
    return distance / pip_size(pip_position)


# ---- volumes


def lots_to_volume(lots: float, lot_size: int) -> int:
    return round(lots * lot_size)


def volume_to_lots(volume: int, lot_size: int) -> float:
    return volume / lot_size


def volume_to_units(volume: int) -> float:
    return volume / VOLUME_SCALE


def units_to_volume(units: float) -> int:
    return round(units * VOLUME_SCALE)


def normalize_volume(volume: int, spec: SymbolSpec) -> int:
    """Floor a volume to the symbol's step; raise ValueError outside [min, max]."""
    stepped = (volume // spec.step_volume) * spec.step_volume
    if stepped < spec.min_volume:
        raise ValueError(f"volume {volume} below the minimum {spec.min_volume} of {spec.name}")
    if stepped > spec.max_volume:
        raise ValueError(f"volume {volume} above the maximum {spec.max_volume} of {spec.name}")
    return stepped


# ---- money, time, leverage


def money_from_wire(value: int, money_digits: int) -> float:
    return round(value / 10**money_digits, money_digits)


def money_to_wire(amount: float, money_digits: int) -> int:
    return round(amount * 10**money_digits)


def ms_to_seconds(ms: int) -> float:
    return ms / 1000


def seconds_to_ms(seconds: float) -> int:
    return round(seconds * 1000)


def minutes_to_seconds(minutes: int) -> int:
    return minutes * 60


def seconds_to_minutes(seconds: int) -> int:
    if seconds % 60:
        raise ValueError(f"{seconds} s is not a whole minute")
    return seconds // 60


def leverage_from_wire(leverage_in_cents: int) -> float:
    return leverage_in_cents / 100


# ---- PnL and money <-> price distance


def quote_to_deposit_rate(base: str, quote: str, deposit: str, price: float) -> float:
    """Rate turning an amount in the quote currency into the deposit currency, from the symbol's own price.

    Only the direct cases: quote == deposit (1) or base == deposit (1 / price). Crosses need another symbol's
    price; callers pass that rate themselves.
    """
    if quote == deposit:
        return 1.0
    if base == deposit:
        return 1.0 / price
    raise ValueError(f"no direct conversion from {quote} to {deposit} via {base}{quote}")


def pnl_deposit(entry: float, exit_: float, side: int, volume: int, quote_to_deposit: float) -> float:
    """Gross PnL in the deposit currency: price move x units x conversion (side +1 long, -1 short)."""
    return (exit_ - entry) * side * volume_to_units(volume) * quote_to_deposit


def money_to_price_distance(amount: float, volume: int, quote_to_deposit: float) -> float:
    """Price distance over which `volume` (cents) gains or loses `amount` in the deposit currency."""
    units = volume_to_units(volume)
    if units <= 0 or quote_to_deposit <= 0:
        raise ValueError("volume and conversion rate must be positive")
    return abs(amount) / (units * quote_to_deposit)


def money_to_relative(amount: float, lots: float, lot_size: int, quote_to_deposit: float, digits: int) -> int:
    """USD (deposit) amount -> relative SL/TP in 1/100000 for `lots` of a symbol."""
    distance = money_to_price_distance(amount, lots_to_volume(lots, lot_size), quote_to_deposit)
    return relative_from_distance(distance, digits)


def is_close(a: float, b: float, digits: int) -> bool:
    return math.isclose(a, b, abs_tol=point_size(digits) / 2)
