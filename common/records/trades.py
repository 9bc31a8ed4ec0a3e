"""The trade log: `trades` records built from a real fill/close (connector, `real_trades.py` makes the inputs) and
from a paper trade's opening and close (paper trader). Pure. A real fill is validated from a plain dict and errors
name the field.

Conventions for both inputs:
- `commission` is a cost in account currency, >= 0 (cTrader reports charges as negative numbers: the
  connector passes abs()); `swap` is signed (positive = credited);
- the stored `pnl` is NET: gross_pnl - commission + swap, so the sum of a session's trade pnl equals the
  balance change it caused (lesson E46); `pnl_pips` is gross, in pips (given, or computed from
  prices and pip_size);
- times are timezone-aware; `timestamp` is when the trade happened (execution time for a real deal,
  the bar's time for a paper opening or close; never the logging time).

Ids are derived (uuid5), not random: the same broker deal or the same paper trade replayed after a
restart (warmup fast-forward) maps to the same id, and the store deduplicates it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from hashlib import sha1
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from common.records import events as ev
from common.records.schema import RecordInvalid, Trade, UtcTime, format_ts, validate
from common.twin.position import Trade as VirtualTrade

Money = float
M = TypeVar("M", bound=BaseModel)
Positive = Annotated[float, Field(gt=0)]


class RealFill(BaseModel):
    """A real deal from the connector (`fill.<SYMBOL>` body): an opening fill or a (partial) close."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    deal_id: Annotated[str, Field(min_length=1)]  # broker deal id: unique per execution
    position_id: str | None = None
    symbol: Annotated[str, Field(min_length=1)]
    action: Literal["OPEN", "CLOSE", "PARTIAL_CLOSE"]
    direction: Literal[-1, 1]  # side of the POSITION (1 long, -1 short), also for a closing deal
    volume: Annotated[float, Field(ge=0)]  # lots executed by this deal
    time: UtcTime  # execution time
    entry_price: float | None = None  # the position's entry price
    exit_price: float | None = None  # the closing deal's price (CLOSE / PARTIAL_CLOSE)
    gross_pnl: Money = 0.0
    commission: Annotated[float, Field(ge=0)] = 0.0
    swap: Money = 0.0
    pnl_pips: float | None = None
    pip_size: Positive | None = None
    intensity: Annotated[int, Field(ge=0, le=3)] = 0  # the signal intensity the executor acted on
    hmm_state: int | None = None
    bar_time: UtcTime | None = None  # bar of the signal that caused the order
    comment: str | None = None
    client_order_id: str | None = None


@dataclass(frozen=True, kw_only=True)
class PaperTrade(VirtualTrade):
    """A closed paper trade: the twin's closed trade plus what the trades table needs (keyword-only). Times are bar
    times (Unix s).

    The one paper trade type: the paper trader's accounts keep it, its book file stores it (`to_dict`), and
    `paper_trade` makes its `trades` record."""

    symbol: str
    hmm_state: int | None = None  # HMM state of the bar that closed it
    is_paper: bool = True

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PaperTrade:
        return cls(**data)

    def opening(self) -> PaperOpening | None:
        """The opening of this trade's position (None for one without an entry time)."""
        if self.entry_time is None:
            return None
        return PaperOpening(self.symbol, self.direction, self.intensity, self.lot, self.entry_time, self.entry_price)


@dataclass(frozen=True)
class PaperOpening:
    """A paper position opened at a bar's close (the same facts whether seen live or read back from its trade)."""

    symbol: str
    direction: int
    intensity: int
    lot: float
    entry_time: int  # bar time
    entry_price: float


def _parse(model: type[M], data: Mapping[str, Any] | M, what: str) -> M:
    if isinstance(data, model):
        return data
    try:
        return model.model_validate(dict(data))
    except ValidationError as exc:
        problems = [(".".join(str(p) for p in e["loc"]) or "<input>", e["msg"]) for e in exc.errors()]
        raise RecordInvalid(what, problems) from None


def _trade(**fields: Any) -> Trade:
    return validate("trades", fields)  # type: ignore[return-value]


def pips(direction: int, entry: float | None, exit_: float | None, pip_size: float | None) -> float | None:
    if entry is None or exit_ is None or pip_size is None:
        return None
    return direction * (exit_ - entry) / pip_size


def real_trade(fill: Mapping[str, Any] | RealFill, *, session_id: str) -> Trade:
    f = _parse(RealFill, fill, "real fill")
    closing = f.action != "OPEN"
    pip_value = f.pnl_pips
    if pip_value is None and closing:
        pip_value = pips(f.direction, f.entry_price, f.exit_price, f.pip_size)
    rid = ev.derived_id("real", f.deal_id)
    return _trade(
        id=rid, session_id=session_id, trade_id=rid.hex[:8], timestamp=f.time, bar_time=f.bar_time,
        symbol=f.symbol, direction=f.direction, intensity=f.intensity, action=f.action, volume=f.volume,
        entry_price=f.entry_price, exit_price=f.exit_price if closing else None,
        pnl=(f.gross_pnl - f.commission + f.swap) if closing else -f.commission + f.swap,
        pnl_pips=pip_value or 0.0, commission=f.commission, swap=f.swap, hmm_state=f.hmm_state,
        is_paper=False, comment=f.comment, position_id=f.position_id, client_order_id=f.client_order_id,
    )


def _bar_time(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def _paper_key(symbol: str, timeframe: str | None, direction: int, entry_time: int) -> str:
    return f":{symbol}:{timeframe or ''}:{direction}:{_bar_time(entry_time).isoformat()}"


def paper_trade(trade: PaperTrade, *, timeframe: str | None, session_id: str) -> Trade:
    """The CLOSE record of a paper trade; its id is derived from the trade (a re-send after a restart is a
    duplicate). `pnl` is net of the round trip's commission, so the opening's record carries no cost."""
    entry = trade.entry_time if trade.entry_time is not None else trade.exit_time
    key = f"{_paper_key(trade.symbol, timeframe, trade.direction, entry)}:{_bar_time(trade.exit_time).isoformat()}"
    rid = ev.derived_id("paper", key)
    exit_time = _bar_time(trade.exit_time)
    return _trade(
        id=rid, session_id=session_id, trade_id=rid.hex[:8], timestamp=exit_time, bar_time=exit_time,
        symbol=trade.symbol, direction=trade.direction, intensity=trade.intensity, action="CLOSE", volume=trade.lot,
        entry_price=trade.entry_price, exit_price=trade.exit_price, pnl=trade.gross_pnl - trade.commission,
        pnl_pips=trade.pips or 0.0,
        commission=trade.commission, swap=0.0, hmm_state=trade.hmm_state, is_paper=True,
    )


def paper_opening(opening: PaperOpening, *, timeframe: str | None, session_id: str) -> Trade:
    """The OPEN record of a paper position (no cost: its trade's CLOSE record carries the round trip's)."""
    rid = ev.derived_id("paper-open", _paper_key(opening.symbol, timeframe, opening.direction, opening.entry_time))
    at = _bar_time(opening.entry_time)
    return _trade(
        id=rid, session_id=session_id, trade_id=rid.hex[:8], timestamp=at, bar_time=at, symbol=opening.symbol,
        direction=opening.direction, intensity=opening.intensity, action="OPEN", volume=opening.lot,
        entry_price=opening.entry_price, is_paper=True,
    )


# ---- the same records as JSON, built directly: paper makes a few at each bar ------------------------------------

_NAMESPACE = ev.NAMESPACE.bytes


def _derived_text(parent: str, label: str) -> str:
    """``str(ev.derived_id(parent, label))`` (uuid5), its digest formatted directly (a test holds them equal)."""
    digest = bytearray(sha1(_NAMESPACE + f"{parent}:{label}".encode()).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = digest.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _plain(direction: object, intensity: object, floats: tuple) -> bool:
    """The values the direct JSON form takes as they are: what the `trades` model accepts without converting
    anything (else the model's own path runs: its conversions, or its RecordInvalid naming the field)."""
    return (type(direction) is int and -1 <= direction <= 1 and type(intensity) is int and 0 <= intensity <= 3
            and all(type(x) is float and math.isfinite(x) for x in floats))


def _json_record(rid: str, session_id: str, at: str, symbol: str, direction: int, intensity: int, action: str,
                 volume: float, entry_price: float | None, exit_price: float | None, pnl: float, pnl_pips: float,
                 commission: float, hmm_state: int | None) -> dict[str, Any]:
    return {"id": rid, "rev": 0, "session_id": session_id, "trade_id": rid[:8], "timestamp": at, "bar_time": at,
            "symbol": symbol, "direction": direction, "intensity": intensity, "action": action, "volume": volume,
            "entry_price": entry_price, "exit_price": exit_price, "pnl": pnl, "pnl_pips": pnl_pips,
            "commission": commission, "swap": 0.0, "hmm_state": hmm_state, "is_paper": True, "comment": None,
            "position_id": None, "client_order_id": None}


def paper_trade_json(trade: PaperTrade, *, timeframe: str | None, session_id: str) -> dict[str, Any]:
    """``paper_trade(...).model_dump(mode="json")``, the same dict (a test holds them equal on many trades),
    built without the model when every value is one it takes as it is."""
    pnl = trade.gross_pnl - trade.commission
    pnl_pips = trade.pips or 0.0
    hmm = trade.hmm_state
    if not (_plain(trade.direction, trade.intensity, (trade.lot, trade.entry_price, trade.exit_price, pnl,
                                                      pnl_pips, trade.commission))
            and trade.lot >= 0 and trade.symbol and type(trade.symbol) is str and type(session_id) is str
            and (hmm is None or type(hmm) is int) and type(trade.exit_time) is int
            and (trade.entry_time is None or type(trade.entry_time) is int)):
        return paper_trade(trade, timeframe=timeframe, session_id=session_id).model_dump(mode="json")
    entry = trade.entry_time if trade.entry_time is not None else trade.exit_time
    exit_time = _bar_time(trade.exit_time)
    key = f"{_paper_key(trade.symbol, timeframe, trade.direction, entry)}:{exit_time.isoformat()}"
    return _json_record(_derived_text("paper", key), session_id, format_ts(exit_time), trade.symbol,
                        trade.direction, trade.intensity, "CLOSE", trade.lot, trade.entry_price, trade.exit_price,
                        pnl, pnl_pips, trade.commission, hmm)


def paper_opening_json(opening: PaperOpening, *, timeframe: str | None, session_id: str) -> dict[str, Any]:
    """``paper_opening(...).model_dump(mode="json")``, the same dict, built as ``paper_trade_json`` is."""
    if not (_plain(opening.direction, opening.intensity, (opening.lot, opening.entry_price)) and opening.lot >= 0
            and opening.symbol and type(opening.symbol) is str and type(session_id) is str
            and type(opening.entry_time) is int):
        return paper_opening(opening, timeframe=timeframe, session_id=session_id).model_dump(mode="json")
    rid = _derived_text("paper-open", _paper_key(opening.symbol, timeframe, opening.direction, opening.entry_time))
    return _json_record(rid, session_id, format_ts(_bar_time(opening.entry_time)), opening.symbol,
                        opening.direction, opening.intensity, "OPEN", opening.lot, opening.entry_price, None, 0.0,
                        0.0, 0.0, None)


_REAL_ACTIONS = ("OPEN", "CLOSE", "PARTIAL_CLOSE")
_REAL_TEXTS = ("position_id", "comment", "client_order_id")


def _finite_or_none(x: object) -> bool:
    return x is None or (type(x) is float and math.isfinite(x))


def _utc_or_none(t: object) -> bool:
    return t is None or (type(t) is datetime and t.tzinfo is UTC and t.year >= 1000)


def real_trade_json(fill: Mapping[str, Any], *, session_id: str) -> dict[str, Any]:
    """``real_trade(fill, ...).model_dump(mode="json")``, the same dict (a test holds them equal on many fills, key
    order and value types included), built without the two models when every value is one they take as it is (the
    connector makes one per fill and close, on an order's path); else the models' own path (their conversions, or
    their RecordInvalid naming the field)."""
    get = fill.get
    action, direction, intensity, hmm = get("action"), get("direction"), get("intensity", 0), get("hmm_state")
    deal_id, symbol, at, bar_time = get("deal_id"), get("symbol"), get("time"), get("bar_time")
    volume, entry, exit_ = get("volume"), get("entry_price"), get("exit_price")
    gross, commission, swap = get("gross_pnl", 0.0), get("commission", 0.0), get("swap", 0.0)
    pnl_pips, pip_size = get("pnl_pips"), get("pip_size")
    closing = action != "OPEN"
    plain = (action in _REAL_ACTIONS and type(direction) is int and direction in (-1, 1)
             and type(intensity) is int and 0 <= intensity <= 3 and (hmm is None or type(hmm) is int)
             and type(deal_id) is str and deal_id and type(symbol) is str and symbol and type(session_id) is str
             and type(at) is datetime and at.tzinfo is UTC and at.year >= 1000 and _utc_or_none(bar_time)
             and all(type(x) is float and math.isfinite(x) for x in (volume, gross, commission, swap))
             and volume >= 0 and commission >= 0 and _finite_or_none(entry) and _finite_or_none(exit_)
             and _finite_or_none(pnl_pips) and (pip_size is None or (_finite_or_none(pip_size) and pip_size > 0))
             and all(get(k) is None or type(get(k)) is str for k in _REAL_TEXTS))
    if plain:
        if pnl_pips is None and closing:
            pnl_pips = pips(direction, entry, exit_, pip_size)
        pnl = (gross - commission + swap) if closing else -commission + swap
        pnl_pips = pnl_pips or 0.0
        plain = math.isfinite(pnl) and math.isfinite(pnl_pips)
    if not plain:
        return real_trade(fill, session_id=session_id).model_dump(mode="json")
    rid = _derived_text("real", deal_id)
    return {"id": rid, "rev": 0, "session_id": session_id, "trade_id": rid[:8], "timestamp": format_ts(at),
            "bar_time": None if bar_time is None else format_ts(bar_time), "symbol": symbol, "direction": direction,
            "intensity": intensity, "action": action, "volume": volume, "entry_price": entry,
            "exit_price": exit_ if closing else None, "pnl": pnl, "pnl_pips": pnl_pips, "commission": commission,
            "swap": swap, "hmm_state": hmm, "is_paper": False, "comment": get("comment"),
            "position_id": get("position_id"), "client_order_id": get("client_order_id")}
