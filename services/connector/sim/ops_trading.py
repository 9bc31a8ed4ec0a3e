"""The simulator's account and trading requests: trader, reconcile, market orders, closes, SL/TP amendments, deal
list; stops and take-profits reached by the prices; swaps at rollover; conversion into the deposit currency.

A mixin of SimServer (server.py): it uses the server's account, symbols, market cursor, faults and `_send`.
An order the server refuses is answered with ``ProtoOAOrderErrorEvent`` (connections.py), as the real server does.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import TYPE_CHECKING, Any

from google.protobuf.message import Message

from services.connector.ctrader import parsing as units
from services.connector.ctrader import schemas as proto
from services.connector.sim import costs, wire
from services.connector.sim.account import Fill, SimError
from services.connector.sim.catalog import ASSET_IDS
from services.connector.sim.market import Instant

if TYPE_CHECKING:
    from services.connector.sim.connections import Session

log = logging.getLogger(__name__)
oa = proto.oa
om = proto.model
ORDER_ACCEPTED, ORDER_FILLED, ORDER_REPLACED, ORDER_REJECTED, SWAP, ORDER_PARTIAL_FILL = 2, 3, 4, 7, 9, 11
MARKET = 1


class TradingOps:
    @property
    def now_ms(self) -> int:
        return units.seconds_to_ms(self.market.now)

    # ---- money
    def convert(self, first: str, last: str) -> float:
        """How much of asset `last` one unit of `first` is worth at the current prices (bids)."""
        chain = self.conversion_chain(first, last)
        steps = []
        for name in chain:
            spec = self.symbols[self.by_name[name]].spec
            quote = self.market.bid_ask(spec.symbol_id)
            if quote is None:
                raise SimError("NO_QUOTES", f"no price of {name} to convert {first} into {last}")
            steps.append((spec.base_asset, spec.quote_asset, quote[0]))
        rate = units.conversion_rate(first, last, steps)
        if rate is None:
            raise SimError("NO_QUOTES", f"no conversion from {first} into {last}")
        return rate

    def _rate(self, symbol_id: int) -> float:
        """The symbol's quote currency -> the deposit currency."""
        return self.convert(self.symbols[symbol_id].spec.quote_asset, self.account.deposit_asset)

    def _commission(self, symbol_id: int, volume: int, price: float) -> int:
        """One deal's commission (positive, wire money of the deposit currency)."""
        sym = self.symbols[symbol_id]
        spec, deposit = sym.spec, self.account.deposit_asset
        amount = costs.commission(
            sym.commission, units.volume_to_lots(volume, spec.lot_size), units.volume_to_units(volume), price,
            self._rate(symbol_id), self.convert("USD", deposit), self.convert(spec.quote_asset, "USD"),
        )
        return units.money_to_wire(amount, self.account.money_digits)

    def _tradable_quote(self, symbol_id: int) -> tuple[float, float]:
        """The bid/ask an order on the symbol executes at, or why it cannot execute now."""
        name = self.symbols[symbol_id].spec.name
        if not self.market.is_open(symbol_id):
            raise SimError("MARKET_CLOSED", f"{name} does not trade at {self.market.now} (its trading calendar)")
        quote = self.market.bid_ask(symbol_id)
        if quote is None:
            raise SimError("NO_QUOTES", f"{name} has no price yet")
        return quote

    # ---- events
    def _execution(self, execution_type: int, order: Any = None, position: Any = None, deal: Any = None,
                   error_code: str = "", server_event: bool = False) -> Any:
        ev = oa.ProtoOAExecutionEvent(
            ctidTraderAccountId=self.account.account_id, executionType=execution_type, isServerEvent=server_event,
        )
        for fld, value in (("order", order), ("position", position), ("deal", deal)):
            if value is not None:
                getattr(ev, fld).CopyFrom(value)
        if error_code:
            ev.errorCode = error_code
        return ev

    def _broadcast(self, msg: Message, origin: Session | None = None, cid: str = "") -> None:
        """Send an account event to every session authorised on the account (clientMsgId to the origin)."""
        for s in list(self.sessions):
            if self.account.account_id in s.accounts:
                self._send(s, msg, cid if s is origin else "")

    def _publish_fill(self, fill: Fill, origin: Session | None, cid: str, accepted: bool = True,
                      partial: bool = False, ordered: int | None = None) -> None:
        """The execution events of a fill; `ordered`: the order's volume when its first deal fills only part of
        it (the order shows what was ordered, its executedVolume what the deal filled)."""
        md = self.account.money_digits
        status = wire.POSITION_CLOSED if fill.closed else wire.POSITION_OPEN
        pos = wire.position(fill.position, status, md)
        shown = fill.order if ordered is None else dataclasses.replace(fill.order, volume=ordered)
        if accepted:
            order = wire.order(shown, wire.ORDER_ACCEPTED_STATUS)
            self._broadcast(self._execution(ORDER_ACCEPTED, order, pos, server_event=fill.server_event), origin, cid)
        etype, order_status = (ORDER_PARTIAL_FILL, wire.ORDER_ACCEPTED_STATUS) if partial else (
            ORDER_FILLED, wire.ORDER_FILLED_STATUS)
        order = wire.order(shown, order_status, executed=fill.deal.volume if partial else None)
        self._broadcast(self._execution(etype, order, pos, wire.deal(fill.deal, md), server_event=fill.server_event),
                        origin, cid)
        self._save_state()

    # ---- requests
    def _on_trader(self, s: Session, msg: Any, cid: str) -> None:
        acc = self.account
        trader = om.ProtoOATrader(
            ctidTraderAccountId=acc.account_id,
            balance=acc.balance,
            depositAssetId=ASSET_IDS[acc.deposit_asset],
            leverageInCents=acc.leverage_in_cents,
            moneyDigits=acc.money_digits,
            traderLogin=self.config.trader_login,
            accountType=0,
            brokerName="Oracle Sim",
            isLimitedRisk=False,
        )
        self._send(s, oa.ProtoOATraderRes(ctidTraderAccountId=acc.account_id, trader=trader), cid)

    def _on_reconcile(self, s: Session, msg: Any, cid: str) -> None:
        res = oa.ProtoOAReconcileRes(ctidTraderAccountId=self.account.account_id)
        res.position.extend(wire.position(p, wire.POSITION_OPEN, self.account.money_digits)
                            for p in self.account.positions.values())
        self._send(s, res, cid)

    def _on_new_order(self, s: Session, msg: Any, cid: str) -> None:
        self._check_symbols([msg.symbolId])
        if msg.orderType != MARKET:
            raise SimError("TRADING_NOT_ALLOWED", "the simulator fills MARKET orders only")
        if msg.HasField("stopLoss") or msg.HasField("takeProfit"):
            raise SimError("TRADING_BAD_STOPS", "absolute SL/TP are not supported for MARKET orders")
        spec = self.symbols[msg.symbolId].spec
        bid, ask = self._tradable_quote(msg.symbolId)
        faults = self.faults
        rule = faults.take(faults.reject, None) if faults.reject else None
        if rule is not None:
            order = om.ProtoOAOrder(
                orderId=self.account._new_id(), orderType=MARKET, orderStatus=3,
                tradeData=wire.trade_data(msg.symbolId, msg.volume, msg.tradeSide, self.now_ms, msg.label,
                                          msg.comment),
            )
            if msg.clientOrderId:
                order.clientOrderId = msg.clientOrderId
            code = rule.get("code", "NOT_ENOUGH_MONEY")
            self._broadcast(self._execution(ORDER_REJECTED, order=order, error_code=code), s, cid)
            return
        slip = faults.take(faults.slippage, None) if faults.slippage else None
        slippage = slip["points"] * spec.point if slip is not None else 0.0
        partial = faults.take(faults.partial, None) if faults.partial else None
        first = msg.volume
        if partial is not None:
            part = int(msg.volume * partial.get("fraction", 0.5)) // spec.step_volume * spec.step_volume
            first = part if spec.min_volume <= part < msg.volume else msg.volume
        sign = 1 if msg.tradeSide == 1 else -1
        price = round((ask if sign > 0 else bid) + sign * slippage, spec.digits)
        fill = self.account.open_market(
            spec, msg.tradeSide, first, bid, ask, self._rate(msg.symbolId), self.now_ms, msg.relativeStopLoss,
            msg.relativeTakeProfit, msg.label, msg.comment, msg.clientOrderId,
            commission=self._commission(msg.symbolId, first, price), slippage=slippage,
        )
        if first == msg.volume:
            self._publish_fill(fill, s, cid)
            return
        self._publish_fill(fill, s, cid, partial=True, ordered=msg.volume)  # the rest a point worse, then
        rest = msg.volume - first
        worse = round(fill.deal.execution_price + sign * spec.point, spec.digits)
        more = self.account.fill_more(spec, fill, rest, worse, self.now_ms,
                                      commission=self._commission(msg.symbolId, rest, worse))
        self._publish_fill(more, s, cid, accepted=False)

    def _on_close_position(self, s: Session, msg: Any, cid: str) -> None:
        pos = self.account.positions.get(msg.positionId)
        if pos is None:
            raise SimError("POSITION_NOT_FOUND", f"position {msg.positionId} not found")
        bid, ask = self._tradable_quote(pos.symbol_id)
        price = bid if pos.trade_side == 1 else ask
        fill = self.account.close(msg.positionId, msg.volume, bid, ask, self._rate(pos.symbol_id), self.now_ms,
                                  commission=self._commission(pos.symbol_id, min(msg.volume, pos.volume), price))
        self._publish_fill(fill, s, cid)

    def _on_amend(self, s: Session, msg: Any, cid: str) -> None:
        pos = self.account.positions.get(msg.positionId)
        if pos is None:
            raise SimError("POSITION_NOT_FOUND", f"position {msg.positionId} not found")
        bid, ask = self._tradable_quote(pos.symbol_id)
        sl = msg.stopLoss if msg.HasField("stopLoss") else None
        tp = msg.takeProfit if msg.HasField("takeProfit") else None
        pos = self.account.amend(self.symbols[pos.symbol_id].spec, msg.positionId, sl, tp, bid, ask, self.now_ms)
        self._save_state()
        self._broadcast(
            self._execution(ORDER_REPLACED, position=wire.position(pos, wire.POSITION_OPEN, self.account.money_digits)),
            s, cid,
        )

    def _on_deal_list(self, s: Session, msg: Any, cid: str) -> None:
        deals = [d for d in self.account.deals if msg.fromTimestamp <= d.timestamp_ms <= msg.toTimestamp]
        max_rows = msg.maxRows or self.config.deal_list_rows
        res = oa.ProtoOADealListRes(ctidTraderAccountId=self.account.account_id, hasMore=len(deals) > max_rows)
        res.deal.extend(wire.deal(d, self.account.money_digits) for d in deals[:max_rows])
        self._send(s, res, cid)

    # ---- the market moves
    def _stops_at(self, inst: Instant) -> None:
        """Stops and take-profits the instant's points reach close their positions (server events)."""
        if not self.account.positions:
            return
        held = {p.symbol_id for p in self.account.positions.values()}
        for sid, point in inst.points:
            if sid not in held:
                continue
            bid, ask = point.price, self.market.ask_of(sid, point.price)
            for pid in self.account.triggered(sid, bid, ask):
                pos = self.account.positions[pid]
                price = bid if pos.trade_side == 1 else ask
                fill = self.account.close(pid, pos.volume, bid, ask, self._rate(sid), self.now_ms, server_event=True,
                                          commission=self._commission(sid, pos.volume, price))
                self._publish_fill(fill, None, "")

    def _swaps_until(self, now: int) -> None:
        """Swaps of every open position for the rollovers between the last look and `now` (SWAP events)."""
        since, self._swapped_until = self._swapped_until, now
        if since is None or now <= since or not self.account.positions:
            return
        md = self.account.money_digits
        accrued = False
        for pos in list(self.account.positions.values()):
            sym = self.symbols[pos.symbol_id]
            charges = [m for _, m in costs.rollovers(since, now, sym.swap) if m]
            if not charges:
                continue
            quote = self.market.bid_ask(pos.symbol_id)
            try:
                rate = self._rate(pos.symbol_id)
            except SimError as exc:
                log.warning("no swap charged on position %d: %s", pos.position_id, exc.description)
                continue
            price = quote[0] if quote is not None else pos.entry_price
            side = 1 if pos.trade_side == 1 else -1
            amount = sum(costs.swap(sym.swap, side, units.volume_to_units(pos.volume), sym.spec.pip, price, rate, m)
                         for m in charges)
            updated = self.account.accrue_swap(pos.position_id, units.money_to_wire(amount, md), self.now_ms)
            accrued = True
            self._broadcast(self._execution(SWAP, position=wire.position(updated, wire.POSITION_OPEN, md),
                                            server_event=True))
        if accrued:  # this runs at every instant: the whole state is written only when a rollover charged swap
            self._save_state()
