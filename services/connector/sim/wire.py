"""Simulator state -> Open API message objects (pure builders)."""

from __future__ import annotations

from typing import Any

from services.connector.calendar import Holiday
from services.connector.ctrader import parsing as units
from services.connector.ctrader import schemas as proto
from services.connector.sim.account import SimDeal, SimOrder, SimPosition
from services.connector.sim.catalog import ASSET_IDS, SimSymbol
from services.connector.sim.replay import CsvBar

oa = proto.oa
om = proto.model
POSITION_OPEN, POSITION_CLOSED = 1, 2
ORDER_ACCEPTED_STATUS, ORDER_FILLED_STATUS, ORDER_REJECTED_STATUS = 1, 2, 3
DEAL_FILLED = 2


def trendbar(bar: CsvBar, period: int) -> Any:
    low, d_open, d_high, d_close = units.trendbar_wire(bar.open, bar.high, bar.low, bar.close)
    return om.ProtoOATrendbar(
        volume=int(round(bar.volume)),
        period=period,
        low=low,
        deltaOpen=d_open,
        deltaHigh=d_high,
        deltaClose=d_close,
        utcTimestampInMinutes=units.seconds_to_minutes(bar.time),
    )


def light_symbol(sym: SimSymbol) -> Any:
    s = sym.spec
    return om.ProtoOALightSymbol(
        symbolId=s.symbol_id,
        symbolName=s.name,
        enabled=True,
        baseAssetId=ASSET_IDS.get(s.base_asset, 0),
        quoteAssetId=ASSET_IDS.get(s.quote_asset, 0),
        symbolCategoryId=1,
        description=f"{s.name} (simulated)",
    )


def symbol(sym: SimSymbol) -> Any:
    s = sym.spec
    cal = sym.calendar
    msg = om.ProtoOASymbol(
        symbolId=s.symbol_id,
        digits=s.digits,
        pipPosition=s.pip_position,
        enableShortSelling=True,
        lotSize=s.lot_size,
        minVolume=s.min_volume,
        maxVolume=s.max_volume,
        stepVolume=s.step_volume,
        swapLong=sym.swap.long,
        swapShort=sym.swap.short,
        swapCalculationType=sym.swap.kind,
        swapRollover3Days=sym.swap.triple_day,
        swapTime=sym.swap.time_min,
        swapPeriod=sym.swap.period_h,
        chargeSwapAtWeekends=sym.swap.charge_weekends,
        commissionType=sym.commission.kind,
        preciseTradingCommissionRate=sym.commission.precise_rate,
        preciseMinCommission=sym.commission.precise_minimum,
        minCommissionType=2 if sym.commission.minimum_in_quote else 1,
        slDistance=s.sl_distance,
        tpDistance=s.tp_distance,
        distanceSetIn=2 if s.distance_in_percent else 1,
        scheduleTimeZone=cal.zone,
    )
    msg.schedule.extend(om.ProtoOAInterval(startSecond=start, endSecond=end) for start, end in cal.intervals)
    msg.holiday.extend(holiday(h, k) for k, h in enumerate(cal.holidays, start=1))
    return msg


def holiday(h: Holiday, holiday_id: int) -> Any:
    msg = om.ProtoOAHoliday(
        holidayId=holiday_id,
        name=h.name or f"holiday {holiday_id}",
        scheduleTimeZone=h.zone,
        holidayDate=h.date,
        isRecurring=h.recurring,
    )
    if h.start_second is not None:
        msg.startSecond = h.start_second
    if h.end_second is not None:
        msg.endSecond = h.end_second
    return msg


def trade_data(symbol_id: int, volume: int, trade_side: int, open_ms: int, label: str, comment: str) -> Any:
    td = om.ProtoOATradeData(symbolId=symbol_id, volume=volume, tradeSide=trade_side, openTimestamp=open_ms)
    if label:
        td.label = label
    if comment:
        td.comment = comment
    return td


def position(p: SimPosition, status: int, money_digits: int) -> Any:
    msg = om.ProtoOAPosition(
        positionId=p.position_id,
        tradeData=trade_data(p.symbol_id, p.volume, p.trade_side, p.open_ms, p.label, p.comment),
        positionStatus=status,
        swap=p.swap,
        price=p.entry_price,
        commission=p.commission,
        usedMargin=p.used_margin,
        moneyDigits=money_digits,
        utcLastUpdateTimestamp=p.updated_ms,
    )
    if p.stop_loss is not None:
        msg.stopLoss = p.stop_loss
    if p.take_profit is not None:
        msg.takeProfit = p.take_profit
    return msg


def order(o: SimOrder, status: int, executed: int | None = None) -> Any:
    """An order as the wire shows it; `executed`: the volume filled so far of an order still accepted (a partial
    fill)."""
    msg = om.ProtoOAOrder(
        orderId=o.order_id,
        tradeData=trade_data(o.symbol_id, o.volume, o.trade_side, o.timestamp_ms, o.label, o.comment),
        orderType=o.order_type,
        orderStatus=status,
        closingOrder=o.closing,
        positionId=o.position_id,
        utcLastUpdateTimestamp=o.timestamp_ms,
    )
    if status == ORDER_FILLED_STATUS or executed is not None:
        msg.executionPrice = o.execution_price
        msg.executedVolume = o.volume if executed is None else executed
    if o.client_order_id:
        msg.clientOrderId = o.client_order_id
    if o.relative_stop_loss:
        msg.relativeStopLoss = o.relative_stop_loss
    if o.relative_take_profit:
        msg.relativeTakeProfit = o.relative_take_profit
    return msg


def deal(d: SimDeal, money_digits: int) -> Any:
    msg = om.ProtoOADeal(
        dealId=d.deal_id,
        orderId=d.order_id,
        positionId=d.position_id,
        volume=d.volume,
        filledVolume=d.volume,
        symbolId=d.symbol_id,
        createTimestamp=d.timestamp_ms,
        executionTimestamp=d.timestamp_ms,
        utcLastUpdateTimestamp=d.timestamp_ms,
        executionPrice=d.execution_price,
        tradeSide=d.trade_side,
        dealStatus=DEAL_FILLED,
        commission=d.commission,
        moneyDigits=money_digits,
    )
    if d.closing:
        msg.closePositionDetail.CopyFrom(
            om.ProtoOAClosePositionDetail(
                entryPrice=d.entry_price,
                grossProfit=d.gross_profit,
                swap=d.swap,
                commission=d.realised_commission,
                balance=d.balance_after,
                quoteToDepositConversionRate=d.quote_to_deposit,
                closedVolume=d.closed_volume,
                moneyDigits=money_digits,
            )
        )
    return msg
