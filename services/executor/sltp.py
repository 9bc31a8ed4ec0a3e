"""SL/TP money amounts -> price distances from the fill for a MARKET order, from the symbol's real data.

The money at risk over a price move of `d` is `d * units * quote_to_deposit`, where
- `units = lots * contract_size` (contract size: units of the base asset in one lot, 100 000 on forex, so
  0.01 forex lot = 1 000 units),
- `quote_to_deposit` turns one unit of the symbol's quote currency into the deposit currency
  (EURUSD on a USD account: 1; USDJPY: 1 / USDJPY price; EURGBP: the GBPUSD price).
So `d = money / (units * quote_to_deposit)`.

The order carries the distances (`sl_distance`, `tp_distance`), rounded to the symbol's precision: a whole number
of points (one point = 10**-digits). The stop distance is rounded DOWN to a whole point, so the loss at the stop
never exceeds `sl_usd`; a distance that rounds to zero points fails. A distance closer than the broker's minimum
for that kind of stop fails too (never widened: that would risk more than configured).

No guessing: missing, zero, negative or non-finite data fails closed with a reason naming the field.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

_FLOOR_EPS = 1e-9  # float noise allowance when flooring to a whole point (in points)
MAX_DIGITS = 10


class SltpError(ValueError):
    """SL/TP cannot be computed; the order must not be sent. `code` is the ack reason."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


@dataclass(frozen=True)
class PriceData:
    """What the conversion reads about the symbol and the account, all from the broker."""

    digits: int | None
    pip_position: int | None
    quote_to_deposit: float | None  # deposit currency per one unit of quote currency


@dataclass(frozen=True)
class StopDistance:
    """One SL or TP as sent: a price distance from the fill, a whole number of points."""

    money: float  # requested amount
    price: float  # distance in price units, rounded down to a point and to the symbol's digits
    points: int  # the distance in points (10**-digits)
    pips: float
    money_at_distance: float  # what the rounded distance is worth (<= money)


@dataclass(frozen=True)
class SltpPlan:
    sl: StopDistance | None
    tp: StopDistance | None

    @property
    def sl_distance(self) -> float | None:
        return self.sl.price if self.sl else None

    @property
    def tp_distance(self) -> float | None:
        return self.tp.price if self.tp else None


def _positive(name: str, value: float | int | None) -> float:
    if value is None:
        raise SltpError("NO_SYMBOL_DATA", f"{name} missing")
    if isinstance(value, bool) or not math.isfinite(value) or value <= 0:
        raise SltpError("NO_SYMBOL_DATA", f"{name} must be positive, got {value!r}")
    return float(value)


def _precision(name: str, value: int | None) -> int:
    if value is None:
        raise SltpError("NO_SYMBOL_DATA", f"{name} missing")
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_DIGITS:
        raise SltpError("NO_SYMBOL_DATA", f"{name} must be an integer 0-{MAX_DIGITS}, got {value!r}")
    return value


def stop_distance(money: float, lots: float | None, contract_size: float | None, data: PriceData, *,
                  kind: str = "SL") -> StopDistance:
    """The price distance at which `lots` gain/lose `money` (deposit currency), rounded down to a point."""
    amount = _positive(f"{kind} amount", money)
    units = _positive("lots", lots) * _positive("contract_size", contract_size)
    rate = _positive("quote_to_deposit", data.quote_to_deposit)
    digits = _precision("digits", data.digits)
    pip_position = _precision("pip_position", data.pip_position)
    exact = amount / (units * rate)
    points = math.floor(exact * 10**digits + _FLOOR_EPS)
    if points <= 0:
        raise SltpError("SLTP_TOO_CLOSE", f"{kind} {amount} is less than one point ({10.0 ** -digits}) away "
                        f"for {lots} lots")
    price = round(points / 10**digits, digits)
    return StopDistance(money=amount, price=price, points=points, pips=price / 10.0 ** -pip_position,
                        money_at_distance=price * units * rate)


def plan(sl_money: float, tp_money: float, lots: float | None, contract_size: float | None, data: PriceData,
         min_sl_distance: float | None = None, min_tp_distance: float | None = None) -> SltpPlan:
    """SL and TP for an opening; an amount of 0 means none.

    `min_sl_distance` / `min_tp_distance` are the broker's minimum price distances (None or 0: none); a stop
    closer than its minimum fails (SLTP_TOO_CLOSE) instead of being widened.
    """
    if sl_money < 0 or tp_money < 0:
        raise SltpError("BAD_CONFIG", f"sl/tp amounts must be >= 0, got {sl_money}/{tp_money}")
    sl = stop_distance(sl_money, lots, contract_size, data, kind="SL") if sl_money > 0 else None
    tp = stop_distance(tp_money, lots, contract_size, data, kind="TP") if tp_money > 0 else None
    for kind, stop, minimum in (("SL", sl, min_sl_distance), ("TP", tp, min_tp_distance)):
        if stop is not None and minimum and stop.price < minimum:
            raise SltpError("SLTP_TOO_CLOSE", f"{kind} distance {stop.price} below the broker minimum {minimum}")
    return SltpPlan(sl=sl, tp=tp)


def absolute_levels(entry: float, direction: int, plan_: SltpPlan, digits: int) -> tuple[float | None, ...]:
    """(sl, tp) absolute prices implied by a plan around an entry (direction +1 long, -1 short)."""
    if direction not in (1, -1):
        raise ValueError(f"direction must be +1 or -1, got {direction}")
    sl = round(entry - direction * plan_.sl.price, digits) if plan_.sl else None
    tp = round(entry + direction * plan_.tp.price, digits) if plan_.tp else None
    return sl, tp


def quote_to_deposit(quote: str, deposit: str, mids: Mapping[tuple[str, str], float]) -> float:
    """Deposit currency per unit of `quote`, from live mid prices keyed by (base, quote) asset names.

    1 when quote == deposit; the direct pair (quote, deposit) as is; the inverse (deposit, quote) as 1/mid.
    Missing or non-positive prices fail closed.
    """
    if not quote or not deposit:
        raise SltpError("NO_RATE", f"asset names missing (quote={quote!r}, deposit={deposit!r})")
    if quote == deposit:
        return 1.0
    direct = mids.get((quote, deposit))
    if direct is not None:
        return _rate(direct, f"{quote}{deposit}")
    inverse = mids.get((deposit, quote))
    if inverse is not None:
        return 1.0 / _rate(inverse, f"{deposit}{quote}")
    raise SltpError("NO_RATE", f"no price for {quote}{deposit} or {deposit}{quote}")


def _rate(value: float, pair: str) -> float:
    if not math.isfinite(value) or value <= 0:
        raise SltpError("NO_RATE", f"price of {pair} must be positive, got {value!r}")
    return value


def price_to_pips(distance: float, pip_position: int) -> float:
    """A price difference in pips (pip = 10**-pipPosition)."""
    return distance / 10.0 ** -pip_position
