"""The simulated trading account (pure state machine: values in, values out; no clock, no I/O).

Money is kept in wire units (integers scaled by 10**money_digits) of the deposit currency; volumes in cents;
prices are doubles. Costs (costs.py computes them, the server passes them in as positive amounts charged):
- commission per side: the opening deal's is shown on the position (``commission``, negative); a close realises
  the closed part's share of it plus the closing deal's own, in ``closePositionDetail.commission``;
- swap accrues on the position at each rollover and is realised, pro rata, at the close;
- the balance moves only at a close: by the closed part's gross PnL + swap + commission (both sides).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from services.connector.ctrader import parsing as units
from services.connector.ctrader.parsing import SymbolSpec

BUY, SELL = 1, 2  # ProtoOATradeSide
MARKET, STOP_LOSS_TAKE_PROFIT = 1, 4  # ProtoOAOrderType


class SimError(Exception):
    def __init__(self, code: str, description: str = "") -> None:
        super().__init__(f"{code}: {description}")
        self.code = code
        self.description = description


def side_sign(trade_side: int) -> int:
    return 1 if trade_side == BUY else -1


def check_volume(volume: int, spec: SymbolSpec) -> None:
    if volume < spec.min_volume or volume > spec.max_volume or volume % spec.step_volume:
        raise SimError("TRADING_BAD_VOLUME", f"volume {volume} invalid for {spec.name} (min {spec.min_volume}, "
                       f"step {spec.step_volume}, max {spec.max_volume})")


@dataclass
class SimPosition:
    position_id: int
    symbol_id: int
    trade_side: int
    volume: int
    entry_price: float
    open_ms: int
    label: str = ""
    comment: str = ""
    stop_loss: float | None = None
    take_profit: float | None = None
    used_margin: int = 0
    updated_ms: int = 0
    swap: int = 0  # accrued, not yet realised (negative: charged)
    commission: int = 0  # the opening deals' commission, not yet realised (negative)


@dataclass
class SimOrder:
    order_id: int
    position_id: int
    symbol_id: int
    trade_side: int
    volume: int
    order_type: int
    execution_price: float
    timestamp_ms: int
    closing: bool = False
    client_order_id: str = ""
    label: str = ""
    comment: str = ""
    relative_stop_loss: int = 0
    relative_take_profit: int = 0


@dataclass
class SimDeal:
    deal_id: int
    order_id: int
    position_id: int
    symbol_id: int
    trade_side: int
    volume: int
    execution_price: float
    timestamp_ms: int
    closing: bool = False
    entry_price: float = 0.0
    gross_profit: int = 0
    balance_after: int = 0
    quote_to_deposit: float = 1.0
    closed_volume: int = 0
    commission: int = 0  # this deal's own (negative: charged)
    swap: int = 0  # a closing deal: the realised swap of the closed part
    realised_commission: int = 0  # a closing deal: both sides' commission of the closed part


@dataclass(frozen=True)
class Fill:
    """What one execution produced: the order, the deal and the position after it (volume 0 = closed)."""

    order: SimOrder
    deal: SimDeal
    position: SimPosition
    closed: bool
    server_event: bool = False


@dataclass
class Account:
    account_id: int
    balance: int
    money_digits: int = 2
    leverage_in_cents: int = 10_000
    deposit_asset: str = "USD"
    positions: dict[int, SimPosition] = field(default_factory=dict)
    deals: list[SimDeal] = field(default_factory=list)
    orders: list[SimOrder] = field(default_factory=list)  # every filled order (opening and closing), in order
    next_id: int = 1
    # deals and orders not yet handed to the history file (`take_history`): the state file stays small, the ever
    # growing history is appended, never rewritten
    unsaved: list[dict[str, Any]] = field(default_factory=list)

    def _record(self, deal: SimDeal, order: SimOrder) -> None:
        self.deals.append(deal)
        self.orders.append(order)
        self.unsaved += [{"deal": asdict(deal)}, {"order": asdict(order)}]

    def take_history(self) -> list[dict[str, Any]]:
        """The deals and orders made since the last call (one record each: {"deal": ...} or {"order": ...})."""
        out, self.unsaved = self.unsaved, []
        return out

    def _new_id(self) -> int:
        self.next_id += 1
        return self.next_id - 1

    def used_margin(self) -> int:
        return sum(p.used_margin for p in self.positions.values())

    def open_market(
        self,
        spec: SymbolSpec,
        trade_side: int,
        volume: int,
        bid: float,
        ask: float,
        quote_to_deposit: float,
        now_ms: int,
        relative_sl: int = 0,
        relative_tp: int = 0,
        label: str = "",
        comment: str = "",
        client_order_id: str = "",
        commission: int = 0,
        slippage: float = 0.0,
    ) -> Fill:
        """A market order filled at the quote (worse by `slippage`, a price distance), charged `commission`."""
        check_volume(volume, spec)
        if relative_sl < 0 or relative_tp < 0:
            raise SimError("TRADING_BAD_STOPS", "relative distances must be positive")
        for name, rel, least in (("stop loss", relative_sl, spec.sl_distance), ("take profit", relative_tp,
                                                                                spec.tp_distance)):
            if rel and rel < least * 10 ** (5 - spec.digits):
                raise SimError("PROTECTION_IS_TOO_CLOSE_TO_MARKET",
                               f"{name} {rel / units.PRICE_SCALE} from the price; {spec.name} needs at least "
                               f"{least} points")
        sign = side_sign(trade_side)
        price = round((ask if trade_side == BUY else bid) + sign * slippage, spec.digits)
        notional = units.volume_to_units(volume) * price * quote_to_deposit
        margin = units.money_to_wire(
            notional / units.leverage_from_wire(self.leverage_in_cents), self.money_digits
        )
        if margin > self.balance - self.used_margin():
            raise SimError("NOT_ENOUGH_MONEY", f"margin {margin} exceeds free margin")
        sl, tp = units.sl_tp_prices(price, sign, relative_sl or None, relative_tp or None, spec.digits)
        pid, oid, did = self._new_id(), self._new_id(), self._new_id()
        pos = SimPosition(
            pid, spec.symbol_id, trade_side, volume, price, now_ms, label, comment, sl, tp, margin, now_ms,
            commission=-commission,
        )
        order = SimOrder(
            oid,
            pid,
            spec.symbol_id,
            trade_side,
            volume,
            MARKET,
            price,
            now_ms,
            False,
            client_order_id,
            label,
            comment,
            relative_sl,
            relative_tp,
        )
        deal = SimDeal(did, oid, pid, spec.symbol_id, trade_side, volume, price, now_ms, commission=-commission)
        self.positions[pid] = pos
        self._record(deal, order)
        return Fill(order, deal, pos, closed=False)

    def fill_more(self, spec: SymbolSpec, fill: Fill, volume: int, price: float, now_ms: int,
                  commission: int = 0) -> Fill:
        """The rest of a partially filled market order: a second deal on the same position (its price becomes the
        volume-weighted entry, its margin grows)."""
        pos = self.positions[fill.position.position_id]
        total = pos.volume + volume
        entry = (pos.entry_price * pos.volume + price * volume) / total
        pos.entry_price = round(entry, spec.digits + 3)  # an average: finer than the symbol's digits
        pos.used_margin += pos.used_margin * volume // pos.volume
        pos.volume, pos.updated_ms, pos.commission = total, now_ms, pos.commission - commission
        order = SimOrder(**{**asdict(fill.order), "volume": total, "execution_price": pos.entry_price,
                            "timestamp_ms": now_ms})
        self.orders[self.orders.index(fill.order)] = order
        deal = SimDeal(self._new_id(), order.order_id, pos.position_id, pos.symbol_id, pos.trade_side, volume,
                       price, now_ms, commission=-commission)
        self.deals.append(deal)
        self.unsaved += [{"deal": asdict(deal)}, {"order": asdict(order)}]  # the order line replaces the first
        return Fill(order, deal, pos, closed=False)
    def close(
        self,
        position_id: int,
        volume: int,
        bid: float,
        ask: float,
        quote_to_deposit: float,
        now_ms: int,
        server_event: bool = False,
        client_order_id: str = "",
        commission: int = 0,
    ) -> Fill:
        """Close `volume` of a position at the quote, charged `commission` for this (closing) deal."""
        pos = self.positions.get(position_id)
        if pos is None:
            raise SimError("POSITION_NOT_FOUND", f"position {position_id} not found")
        if volume <= 0 or volume > pos.volume:
            raise SimError("TRADING_BAD_VOLUME", f"close volume {volume} of position volume {pos.volume}")
        close_side = SELL if pos.trade_side == BUY else BUY
        price = bid if pos.trade_side == BUY else ask
        pnl = units.pnl_deposit(pos.entry_price, price, side_sign(pos.trade_side), volume, quote_to_deposit)
        gross = units.money_to_wire(pnl, self.money_digits)
        swap = pos.swap * volume // pos.volume if volume < pos.volume else pos.swap
        opening = pos.commission * volume // pos.volume if volume < pos.volume else pos.commission
        realised = opening - commission
        pos.swap, pos.commission = pos.swap - swap, pos.commission - opening
        self.balance += gross + swap + realised
        oid, did = self._new_id(), self._new_id()
        order_type = STOP_LOSS_TAKE_PROFIT if server_event else MARKET
        order = SimOrder(
            oid,
            pos.position_id,
            pos.symbol_id,
            close_side,
            volume,
            order_type,
            price,
            now_ms,
            True,
            client_order_id,
            pos.label,
            pos.comment,
        )
        deal = SimDeal(
            did,
            oid,
            pos.position_id,
            pos.symbol_id,
            close_side,
            volume,
            price,
            now_ms,
            True,
            pos.entry_price,
            gross,
            self.balance,
            quote_to_deposit,
            volume,
            commission=-commission,
            swap=swap,
            realised_commission=realised,
        )
        self._record(deal, order)
        released = pos.used_margin * volume // pos.volume
        pos.used_margin -= released
        pos.volume -= volume
        pos.updated_ms = now_ms
        closed = pos.volume == 0
        snapshot = SimPosition(**asdict(pos))
        if closed:
            snapshot.volume = volume  # a closed position reports the volume it had
            del self.positions[position_id]
        return Fill(order, deal, snapshot, closed=closed, server_event=server_event)

    def amend(
        self,
        spec: SymbolSpec,
        position_id: int,
        stop_loss: float | None,
        take_profit: float | None,
        bid: float,
        ask: float,
        now_ms: int,
    ) -> SimPosition:
        pos = self.positions.get(position_id)
        if pos is None:
            raise SimError("POSITION_NOT_FOUND", f"position {position_id} not found")
        market = bid if pos.trade_side == BUY else ask
        sign = side_sign(pos.trade_side)
        if stop_loss is not None and (stop_loss - market) * sign >= 0:
            raise SimError("TRADING_BAD_STOPS", f"stop loss {stop_loss} on the wrong side of {market}")
        if take_profit is not None and (take_profit - market) * sign <= 0:
            raise SimError("TRADING_BAD_STOPS", f"take profit {take_profit} on the wrong side of {market}")
        point = units.point_size(spec.digits)
        for name, price, least in (("stop loss", stop_loss, spec.sl_distance), ("take profit", take_profit,
                                                                               spec.tp_distance)):
            if price is not None and abs(price - market) < least * point - point / 2:
                raise SimError("PROTECTION_IS_TOO_CLOSE_TO_MARKET",
                               f"{name} {price} is {abs(price - market):.{spec.digits}f} from the market {market}; "
                               f"{spec.name} needs at least {least} points")
        pos.stop_loss, pos.take_profit, pos.updated_ms = stop_loss, take_profit, now_ms
        return pos

    def accrue_swap(self, position_id: int, amount: int, now_ms: int) -> SimPosition:
        """A rollover's swap on a position (negative: charged)."""
        pos = self.positions[position_id]
        pos.swap += amount
        pos.updated_ms = now_ms
        return pos

    def triggered(self, symbol_id: int, bid: float, ask: float) -> list[int]:
        """Positions of a symbol whose SL or TP the current quote reaches (longs on bid, shorts on ask)."""
        hit = []
        for pos in self.positions.values():
            if pos.symbol_id != symbol_id:
                continue
            sign = side_sign(pos.trade_side)
            market = bid if pos.trade_side == BUY else ask
            sl_hit = pos.stop_loss is not None and (market - pos.stop_loss) * sign <= 0
            tp_hit = pos.take_profit is not None and (market - pos.take_profit) * sign >= 0
            if sl_hit or tp_hit:
                hit.append(pos.position_id)
        return hit

    def to_json(self) -> dict[str, Any]:
        """The account without its history (deals and orders: `take_history`, `with_history`)."""
        return {
            "account_id": self.account_id,
            "balance": self.balance,
            "money_digits": self.money_digits,
            "leverage_in_cents": self.leverage_in_cents,
            "deposit_asset": self.deposit_asset,
            "next_id": self.next_id,
            "positions": [asdict(p) for p in self.positions.values()],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any], history: list[dict[str, Any]] | None = None) -> Account:
        """From `to_json` and the history records; a state file of an older simulator held its deals and orders
        itself: they are read, and handed to the history file at the next save."""
        acc = cls(
            data["account_id"],
            data["balance"],
            data["money_digits"],
            data["leverage_in_cents"],
            data.get("deposit_asset", "USD"),  # state files of older versions: USD accounts
            next_id=data["next_id"],
        )
        for p in data["positions"]:
            acc.positions[p["position_id"]] = SimPosition(**p)
        if "deals" in data:
            acc.deals = [SimDeal(**d) for d in data["deals"]]
            acc.orders = [SimOrder(**o) for o in data.get("orders", [])]
            acc.unsaved = [{"deal": d} for d in data["deals"]] + [{"order": o} for o in data.get("orders", [])]
        by_order: dict[int, int] = {}
        for record in history or ():
            if "deal" in record:
                acc.deals.append(SimDeal(**record["deal"]))
            else:
                order = SimOrder(**record["order"])
                if order.order_id in by_order:  # a partial fill's order, completed later
                    acc.orders[by_order[order.order_id]] = order
                else:
                    by_order[order.order_id] = len(acc.orders)
                    acc.orders.append(order)
        return acc
