"""Pure conversions from Open API message objects to domain values (protobuf meets the domain here only)."""

from __future__ import annotations

from typing import Any

from services.connector import units
from services.connector.bars import Bar, bar_from_trendbar
from services.connector.models import Deal, Position, PositionClosed
from services.connector.units import SymbolSpec

BUY = 1
STOP_LOSS_TAKE_PROFIT = 4


def direction(trade_side: int) -> int:
    return 1 if trade_side == BUY else -1


def symbol_spec(light: Any, full: Any) -> SymbolSpec:
    """ProtoOALightSymbol + ProtoOASymbol -> SymbolSpec (asset names are the asset ids as text)."""
    return SymbolSpec(
        symbol_id=full.symbolId,
        name=light.symbolName,
        digits=full.digits,
        pip_position=full.pipPosition,
        lot_size=full.lotSize or 0,
        min_volume=full.minVolume,
        step_volume=full.stepVolume,
        max_volume=full.maxVolume,
        base_asset=str(light.baseAssetId),
        quote_asset=str(light.quoteAssetId),
    )


def trendbar_to_bar(tb: Any, symbol: str, digits: int, close_fallback: int | None = None) -> Bar:
    """ProtoOATrendbar -> Bar. A live trendbar without deltaClose closes at `close_fallback` (the bid)."""
    if tb.HasField("deltaClose"):
        d_close = tb.deltaClose
    elif close_fallback is not None:
        d_close = close_fallback - tb.low
    else:
        d_close = 0
    return bar_from_trendbar(
        symbol, tb.low, tb.deltaOpen, tb.deltaHigh, d_close, tb.utcTimestampInMinutes, tb.volume, digits
    )


def position(p: Any, spec: SymbolSpec) -> Position:
    td = p.tradeData
    md = p.moneyDigits if p.HasField("moneyDigits") else 2
    return Position(
        ticket=p.positionId,
        symbol=spec.name,
        direction=direction(td.tradeSide),
        volume=units.volume_to_lots(td.volume, spec.lot_size),
        volume_wire=td.volume,
        open_price=p.price,
        open_time=units.ms_to_seconds(td.openTimestamp),
        sl=p.stopLoss if p.HasField("stopLoss") else None,
        tp=p.takeProfit if p.HasField("takeProfit") else None,
        label=td.label,
        comment=td.comment,
        used_margin=units.money_from_wire(int(p.usedMargin), md) if p.HasField("usedMargin") else 0.0,
        current_price=p.price,
    )


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
        volume=units.volume_to_lots(d.filledVolume or d.volume, spec.lot_size),
        price=d.executionPrice,
        time=units.ms_to_seconds(d.executionTimestamp),
        closing=closing,
        entry_price=cpd.entryPrice if closing else None,
        gross_profit=units.money_from_wire(cpd.grossProfit, cmd) if closing else 0.0,
        swap=units.money_from_wire(cpd.swap, cmd) if closing else 0.0,
        commission=units.money_from_wire(cpd.commission if closing else d.commission, cmd),
        balance=units.money_from_wire(cpd.balance, cmd) if closing else None,
    )


def position_closed(
    d: Deal, position_direction: int, external: bool, server_stop: bool, full: bool, label: str = "",
    comment: str = "",
) -> PositionClosed:
    reason = "SL_TP" if server_stop else ("EXTERNAL" if external else "CLIENT")
    return PositionClosed(
        ticket=d.position_id,
        symbol=d.symbol,
        direction=position_direction,
        volume=d.volume,
        entry_price=d.entry_price or 0.0,
        close_price=d.price,
        gross_profit=d.gross_profit,
        swap=d.swap,
        commission=d.commission,
        net_profit=round(d.gross_profit + d.swap + d.commission, 8),
        balance=d.balance,
        time=d.time,
        reason=reason,
        external=external or server_stop,
        label=label,
        full=full,
        comment=comment,
    )


def merge_quote(
    bid: float | None, ask: float | None, spot: Any, digits: int
) -> tuple[float | None, float | None]:
    """A spot event may carry only the side that changed: keep the other from the last quote."""
    if spot.HasField("bid"):
        bid = units.price_from_wire(spot.bid, digits)
    if spot.HasField("ask"):
        ask = units.price_from_wire(spot.ask, digits)
    return bid, ask
