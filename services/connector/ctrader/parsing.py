"""Every cTrader Open API unit conversion, and protobuf -> domain values, in one pure module.

Nothing past this module sees a cTrader unit: the port's values (services/connector/port.py) speak lots, prices,
price distances and account money.

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
from dataclasses import dataclass, replace
from typing import Any

from services.connector import port
from services.connector.calendar import Holiday, TradingCalendar
from services.connector.port import Bar, Deal, Instrument, Position

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
    sl_distance: int = 0  # ProtoOASymbol.slDistance: points (or 1/100 % of the price when distance_in_percent)
    tp_distance: int = 0
    distance_in_percent: bool = False

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


def order_volume(lots: float, spec: SymbolSpec) -> int:
    """Lots -> protocol volume, exactly; ValueError (in lots) when the lots are off the symbol's step or outside
    its limits. Never rounds to the step: which lots to send is the caller's rule, not this module's."""
    if not math.isfinite(lots) or lots <= 0:
        raise ValueError(f"lots must be a positive number, got {lots}")
    exact = lots * spec.lot_size
    volume = round(exact)
    if abs(exact - volume) > 1e-6 * max(1.0, exact) or volume % spec.step_volume:
        raise ValueError(f"{lots:g} lots is not a multiple of the step of {spec.name} ({spec.step_lots:g} lots)")
    if volume < spec.min_volume:
        raise ValueError(f"{lots:g} lots is below the minimum of {spec.name} ({spec.min_lots:g} lots)")
    if volume > spec.max_volume:
        raise ValueError(f"{lots:g} lots is above the maximum of {spec.name} ({spec.max_lots:g} lots)")
    return volume


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


def conversion_rate(start: str, target: str, steps: list[tuple[str, str, float]]) -> float | None:
    """Rate turning an amount of asset `start` into `target` along a chain of symbols given as (base, quote,
    price): a price is quote per base. None when the chain does not lead from `start` to `target`."""
    asset, rate = start, 1.0
    for base, quote, price in steps:
        if not price > 0:
            return None
        if asset == quote:
            rate, asset = rate / price, base
        elif asset == base:
            rate, asset = rate * price, quote
        else:
            return None
    return rate if asset == target else None


def pnl_deposit(entry: float, exit_: float, side: int, volume: int, quote_to_deposit: float) -> float:
    """Gross PnL in the deposit currency: price move x units x conversion (side +1 long, -1 short)."""
    return (exit_ - entry) * side * volume_to_units(volume) * quote_to_deposit


def money_to_price_distance(amount: float, volume: int, quote_to_deposit: float) -> float:
    """Price distance over which `volume` (cents) gains or loses `amount` in the deposit currency."""
    units = volume_to_units(volume)
    if units <= 0 or quote_to_deposit <= 0:
        raise ValueError("volume and conversion rate must be positive")
    return abs(amount) / (units * quote_to_deposit)


def is_close(a: float, b: float, digits: int) -> bool:
    return math.isclose(a, b, abs_tol=point_size(digits) / 2)


# ---- protobuf -> domain values

BUY = 1
STOP_LOSS_TAKE_PROFIT = 4
DISTANCE_IN_PERCENTAGE = 2  # ProtoOASymbolDistanceType


def direction(trade_side: int) -> int:
    return 1 if trade_side == BUY else -1


def symbol_spec(light: Any, full: Any, assets: dict[int, str] | None = None) -> SymbolSpec:
    """ProtoOALightSymbol + ProtoOASymbol -> SymbolSpec (asset ids named from `assets` when known)."""
    names = assets or {}
    return SymbolSpec(
        symbol_id=full.symbolId,
        name=light.symbolName,
        digits=full.digits,
        pip_position=full.pipPosition,
        lot_size=full.lotSize or 0,
        min_volume=full.minVolume,
        step_volume=full.stepVolume,
        max_volume=full.maxVolume,
        base_asset=names.get(light.baseAssetId, str(light.baseAssetId)),
        quote_asset=names.get(light.quoteAssetId, str(light.quoteAssetId)),
        sl_distance=full.slDistance if full.HasField("slDistance") else 0,
        tp_distance=full.tpDistance if full.HasField("tpDistance") else 0,
        distance_in_percent=full.distanceSetIn == DISTANCE_IN_PERCENTAGE,
    )


def calendar(full: Any) -> TradingCalendar | None:
    """ProtoOASymbol's trading schedule and holidays as a TradingCalendar; None when the broker gives no schedule
    (then only a refused order tells a closed market)."""
    if not full.schedule:
        return None
    holidays = [
        Holiday(h.holidayDate, h.isRecurring, h.startSecond if h.HasField("startSecond") else None,
                h.endSecond if h.HasField("endSecond") else None, h.scheduleTimeZone, h.name)
        for h in full.holiday
    ]
    zone = full.scheduleTimeZone if full.HasField("scheduleTimeZone") and full.scheduleTimeZone else "UTC"
    return TradingCalendar.of(zone, [(i.startSecond, i.endSecond) for i in full.schedule], holidays)


def min_distance(raw: int, spec: SymbolSpec, price: float | None) -> float:
    """slDistance/tpDistance -> a price distance: points, or 1/100 percent of the price (0 without a price)."""
    if not raw:
        return 0.0
    if spec.distance_in_percent:
        return round(price * raw / 10_000, spec.digits) if price else 0.0
    return round(raw * spec.point, spec.digits)


def instrument(spec: SymbolSpec, price: float | None = None, calendar: Any = None) -> Instrument:
    """The port's view of a symbol: lots and price distances (a percentage distance needs the current price)."""
    return Instrument(
        symbol=spec.name,
        digits=spec.digits,
        pip_position=spec.pip_position,
        lot_units=volume_to_units(spec.lot_size),
        min_lots=spec.min_lots,
        step_lots=spec.step_lots,
        max_lots=spec.max_lots,
        base_asset=spec.base_asset,
        quote_asset=spec.quote_asset,
        min_sl_distance=min_distance(spec.sl_distance, spec, price),
        min_tp_distance=min_distance(spec.tp_distance, spec, price),
        calendar=calendar,
    )


def trendbar_to_bar(tb: Any, symbol: str, digits: int, close_fallback: int | None = None, timeframe: str = "") -> Bar:
    """ProtoOATrendbar -> Bar. A live trendbar without deltaClose closes at `close_fallback` (the bid).
    `trendbar_prices`' arithmetic inlined (a spot event carries one a period: the hottest conversion)."""
    low = tb.low
    if tb.HasField("deltaClose"):
        close = low + tb.deltaClose
    elif close_fallback is not None:
        close = close_fallback
    else:
        close = low
    return Bar(symbol, timeframe, tb.utcTimestampInMinutes * 60, round((low + tb.deltaOpen) / PRICE_SCALE, digits),
               round((low + tb.deltaHigh) / PRICE_SCALE, digits), round(low / PRICE_SCALE, digits),
               round(close / PRICE_SCALE, digits), float(tb.volume))


def position(p: Any, spec: SymbolSpec) -> tuple[Position, int]:
    """ProtoOAPosition -> (Position, its volume in protocol units: what a full close must send).

    The position's commission is the opening's charge: its net PnL counts the closing's too (the same amount), as
    cTrader's own net figure does.
    """
    td = p.tradeData
    md = p.moneyDigits if p.HasField("moneyDigits") else 2
    commission = money_from_wire(p.commission, md) if p.HasField("commission") else 0.0
    return Position(
        ticket=p.positionId,
        symbol=spec.name,
        direction=direction(td.tradeSide),
        volume=volume_to_lots(td.volume, spec.lot_size),
        open_price=p.price,
        open_time=ms_to_seconds(td.openTimestamp),
        sl=p.stopLoss if p.HasField("stopLoss") else None,
        tp=p.takeProfit if p.HasField("takeProfit") else None,
        label=td.label,
        comment=td.comment,
        used_margin=money_from_wire(int(p.usedMargin), md) if p.HasField("usedMargin") else 0.0,
        current_price=p.price,
        swap=money_from_wire(p.swap, md),
        commission=round(2 * commission, md),
    ), td.volume


def marked(p: Position, price: float, quote_to_deposit: float | None, volume: int, money_digits: int) -> Position:
    """The position at `price` (the side it would close at): gross PnL from the quote, net with its costs."""
    if quote_to_deposit is None:
        return replace(p, current_price=price)
    gross = round(pnl_deposit(p.open_price, price, p.direction, volume, quote_to_deposit), money_digits)
    return replace(p, current_price=price, gross_pnl=gross,
                   pnl=round(gross + p.swap + p.commission, money_digits))


def deal(d: Any, spec: SymbolSpec) -> Deal:
    md = d.moneyDigits if d.HasField("moneyDigits") else 2
    closing = d.HasField("closePositionDetail")
    cpd = d.closePositionDetail
    cmd = cpd.moneyDigits if closing and cpd.HasField("moneyDigits") else md
    return Deal(
        deal_id=d.dealId,
        order_id=d.orderId,
        position_id=d.positionId,
        symbol=spec.name,
        direction=direction(d.tradeSide),
        volume=volume_to_lots(d.filledVolume or d.volume, spec.lot_size),
        price=d.executionPrice,
        time=ms_to_seconds(d.executionTimestamp),
        closing=closing,
        entry_price=cpd.entryPrice if closing else None,
        gross_profit=money_from_wire(cpd.grossProfit, cmd) if closing else 0.0,
        swap=money_from_wire(cpd.swap, cmd) if closing else 0.0,
        commission=money_from_wire(cpd.commission if closing else d.commission, cmd),
        balance=money_from_wire(cpd.balance, cmd) if closing else None,
    )


def merge_quote(
    bid: float | None, ask: float | None, spot: Any, digits: int
) -> tuple[float | None, float | None]:
    """A spot event may carry only the side that changed: keep the other from the last quote."""
    if spot.HasField("bid"):
        bid = price_from_wire(spot.bid, digits)
    if spot.HasField("ask"):
        ask = price_from_wire(spot.ask, digits)
    return bid, ask


# ---- order errors: the broker's codes -> common.messages.ORDER_ERROR_CODES

_ORDER_ERRORS = {
    "TRADING_BAD_VOLUME": "BAD_VOLUME",
    "TRADING_BAD_STOPS": "BAD_STOPS",
    "TRADING_BAD_PRICES": "BAD_STOPS",
    "PROTECTION_IS_TOO_CLOSE_TO_MARKET": "STOPS_TOO_CLOSE",
    "POSITION_NOT_FOUND": "POSITION_NOT_FOUND",
    "POSITION_NOT_OPEN": "POSITION_NOT_FOUND",
    "NOT_ENOUGH_MONEY": "NOT_ENOUGH_MONEY",
    "MAX_EXPOSURE_REACHED": "NOT_ENOUGH_MONEY",
    "MARKET_CLOSED": "MARKET_CLOSED",
    "SYMBOL_HAS_HOLIDAY": "MARKET_CLOSED",
    "TRADING_DISABLED": "TRADING_DISABLED",
    "TRADING_NOT_ALLOWED": "TRADING_DISABLED",
    "SHORT_SELLING_NOT_ALLOWED": "TRADING_DISABLED",
    "REQUEST_FREQUENCY_EXCEEDED": "RATE_LIMITED",
    "BLOCKED_PAYLOAD_TYPE": "RATE_LIMITED",
}


def order_error(broker_code: str) -> str:
    """The typed reason of an order the broker refused."""
    return _ORDER_ERRORS.get(broker_code, "REJECTED")


def failed_order(client_order_id: str, broker_code: str, description: str = "",
                 ticket: int | None = None) -> port.OrderResult:
    text = f"{broker_code}: {description}" if description else broker_code
    return port.OrderResult(False, client_order_id, ticket=ticket, error=text, error_code=order_error(broker_code),
                            broker_code=broker_code)
