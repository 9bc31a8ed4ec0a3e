"""The simulator's reference and market-data requests: assets, symbols and their specifications, conversion
chains, spot and live-trendbar subscriptions, spot events, trendbar history.

A mixin of SimServer (server.py): it uses the server's symbols, market cursor, `_send` and `_send_frame`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from services.connector.ctrader import parsing as units
from services.connector.ctrader import periods as timeframes
from services.connector.ctrader import schemas as proto
from services.connector.sim import costs, spot_frames, wire
from services.connector.sim.account import SimError
from services.connector.sim.catalog import ASSET_IDS

if TYPE_CHECKING:
    from services.connector.sim.connections import Session

oa = proto.oa
ASSET_NAMES = {v: k for k, v in ASSET_IDS.items()}
SPOT_EVENT_NAME = oa.ProtoOASpotEvent.DESCRIPTOR.name

# The widest fromTimestamp..toTimestamp a trendbar request may span, per period (ms), as Spotware's own .NET SDK
# has them (spotware/OpenAPI.Net, src/OpenAPI.Net/Helpers/TrendbarsMaximumTime.cs); the Open API documentation's
# "symbol data" page only says the limits depend on the period. Wider -> INCORRECT_BOUNDARIES.
TRENDBAR_SPAN_LIMIT_MS = {
    **dict.fromkeys(("M1", "M2", "M3", "M4", "M5"), 302_400_000),  # 3.5 days
    **dict.fromkeys(("M10", "M15", "M30", "H1"), 21_168_000_000),  # 245 days (35 weeks)
    **dict.fromkeys(("H4", "H12", "D1"), 31_622_400_000),  # 366 days
}


def period_seconds(period: int) -> int:
    """A trendbar period's length; the simulator serves the fixed ones (M1..D1), not W1 or MN1."""
    try:
        return timeframes.period_seconds(period)
    except ValueError:
        raise SimError("INVALID_REQUEST", f"trendbar period {period} is not served (M1..D1 only)") from None


class MarketOps:
    # while an advance runs (no subscription changes meanwhile): `_spot_periods` by (session id, symbol id)
    _burst_spot_periods: dict[tuple[int, int], list[tuple[int, int]]] | None = None

    # ---- reference data
    def _on_assets(self, s: Session, msg: Any, cid: str) -> None:
        res = oa.ProtoOAAssetListRes(ctidTraderAccountId=msg.ctidTraderAccountId)
        for name, asset_id in ASSET_IDS.items():
            res.asset.add(assetId=asset_id, name=name, displayName=name, digits=2)
        self._send(s, res, cid)

    def _on_symbols(self, s: Session, msg: Any, cid: str) -> None:
        res = oa.ProtoOASymbolsListRes(ctidTraderAccountId=msg.ctidTraderAccountId)
        res.symbol.extend(wire.light_symbol(sym) for sym in self.symbols.values())
        self._send(s, res, cid)

    def _on_symbol_by_id(self, s: Session, msg: Any, cid: str) -> None:
        self._check_symbols(msg.symbolId)
        res = oa.ProtoOASymbolByIdRes(ctidTraderAccountId=msg.ctidTraderAccountId)
        res.symbol.extend(wire.symbol(self.symbols[i]) for i in msg.symbolId)
        self._send(s, res, cid)

    def conversion_chain(self, first: str, last: str) -> list[str]:
        """Symbol names converting asset `first` into `last` (the catalog's symbols, shortest chain)."""
        pairs = [(s.spec.name, s.spec.base_asset, s.spec.quote_asset) for s in self.symbols.values()
                 if not s.spec.name.startswith("SYN")]
        return costs.conversion_chain(pairs, first, last)

    def _on_conversion(self, s: Session, msg: Any, cid: str) -> None:
        first, last = ASSET_NAMES.get(msg.firstAssetId), ASSET_NAMES.get(msg.lastAssetId)
        if first is None or last is None:
            unknown = msg.firstAssetId if first is None else msg.lastAssetId
            raise SimError("INVALID_REQUEST", f"unknown asset id {unknown}")
        res = oa.ProtoOASymbolsForConversionRes(ctidTraderAccountId=msg.ctidTraderAccountId)
        res.symbol.extend(wire.light_symbol(self.symbols[self.by_name[n]]) for n in self.conversion_chain(first, last))
        self._send(s, res, cid)

    def _check_symbols(self, ids: Any) -> None:
        missing = [i for i in ids if i not in self.symbols]
        if missing:
            raise SimError("SYMBOL_NOT_FOUND", f"unknown symbol ids {missing}")

    # ---- live data
    def _on_subscribe_spots(self, s: Session, msg: Any, cid: str) -> None:
        self._check_symbols(msg.symbolId)
        if any(i in s.spots for i in msg.symbolId):
            raise SimError("ALREADY_SUBSCRIBED", "already subscribed to spots")
        s.spots.update(msg.symbolId)
        self.market.price(msg.symbolId)
        s.spot_timestamps = s.spot_timestamps or msg.subscribeToSpotTimestamp
        self._send(s, oa.ProtoOASubscribeSpotsRes(ctidTraderAccountId=msg.ctidTraderAccountId), cid)
        for sid in msg.symbolId:  # the latest prices, even while the market is closed
            self._send_spot(s, sid)

    def _on_unsubscribe_spots(self, s: Session, msg: Any, cid: str) -> None:
        s.spots.difference_update(msg.symbolId)
        s.trendbars = {t for t in s.trendbars if t[0] not in msg.symbolId}
        self._send(s, oa.ProtoOAUnsubscribeSpotsRes(ctidTraderAccountId=msg.ctidTraderAccountId), cid)

    def _on_subscribe_trendbar(self, s: Session, msg: Any, cid: str) -> None:
        self._check_symbols([msg.symbolId])
        if msg.symbolId not in s.spots:
            raise SimError("NOT_SUBSCRIBED_TO_SPOTS", "subscribe to spots first")
        period_seconds(msg.period)
        s.trendbars.add((msg.symbolId, msg.period))
        self._send(s, oa.ProtoOASubscribeLiveTrendbarRes(ctidTraderAccountId=msg.ctidTraderAccountId), cid)
        self._send_spot(s, msg.symbolId)

    def _on_unsubscribe_trendbar(self, s: Session, msg: Any, cid: str) -> None:
        s.trendbars.discard((msg.symbolId, msg.period))
        self._send(s, oa.ProtoOAUnsubscribeLiveTrendbarRes(ctidTraderAccountId=msg.ctidTraderAccountId), cid)

    def _send_spot(self, s: Session, symbol_id: int) -> None:
        """The symbol's latest point as a spot event, with the forming bar of every period the session
        subscribed for it; timestamp = the point's time (written by hand: spot_frames.py)."""
        if s.closed:
            return
        market = self.market
        last = market.last_point(symbol_id)
        if last is None:  # no point yet (the start of the data): nothing to quote
            frame = spot_frames.spot_frame(spot_frames.spot_payload(self.account.account_id, symbol_id, None, None))
        else:
            bid = last.price
            bars = []
            for period, seconds in self._spot_periods(s, symbol_id):
                row = market.forming_row(symbol_id, seconds)
                if row is not None:
                    bars.append(spot_frames.bar_bytes(row, period))
            frame = spot_frames.spot_event_frame(
                self.account.account_id, symbol_id, units.price_to_wire(bid),
                units.price_to_wire(market.ask_of(symbol_id, bid)),
                units.seconds_to_ms(last.time) if s.spot_timestamps else None, bars)
        self._send_frame(s, SPOT_EVENT_NAME, frame)

    def _spot_periods(self, s: Session, symbol_id: int) -> list[tuple[int, int]]:
        """The live trendbar periods the session subscribed for the symbol, in the order a spot event carries
        them: (period, seconds); made once per burst."""
        memo = self._burst_spot_periods
        got = memo.get((id(s), symbol_id)) if memo is not None else None
        if got is None:
            got = [(period, period_seconds(period)) for sid, period in sorted(s.trendbars) if sid == symbol_id]
            if memo is not None:
                memo[(id(s), symbol_id)] = got
        return got

    # ---- history
    def _on_trendbars(self, s: Session, msg: Any, cid: str) -> None:
        self._check_symbols([msg.symbolId])
        seconds = period_seconds(msg.period)
        limit_ms = TRENDBAR_SPAN_LIMIT_MS[timeframes.name_of(msg.period)]
        from_ms = msg.fromTimestamp if msg.HasField("fromTimestamp") else 0
        to_ms = msg.toTimestamp if msg.HasField("toTimestamp") else 0
        if from_ms > to_ms:
            raise SimError("INCORRECT_BOUNDARIES", f"fromTimestamp {from_ms} is after toTimestamp {to_ms}")
        if to_ms - from_ms > limit_ms:
            raise SimError(
                "INCORRECT_BOUNDARIES",
                f"fromTimestamp..toTimestamp spans {to_ms - from_ms} ms; {timeframes.name_of(msg.period)} "
                f"allows at most {limit_ms} ms",
            )
        limit = min(msg.count or self.config.history_page, self.config.history_page)
        bars = self.market.history(msg.symbolId, seconds, -(-from_ms // 1000), to_ms // 1000, limit)
        res = oa.ProtoOAGetTrendbarsRes(
            ctidTraderAccountId=msg.ctidTraderAccountId,
            period=msg.period,
            timestamp=units.seconds_to_ms(self.market.now),
            symbolId=msg.symbolId,
        )
        res.trendbar.extend(wire.trendbar(b, msg.period) for b in bars)
        self._send(s, res, cid)
