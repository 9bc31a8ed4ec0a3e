"""The trade log: `trades` records built from a real fill/close (connector) and from a paper trade
(paper trader). Pure. Inputs are validated from plain dicts (msgpack bodies) and errors name the field.

Conventions for both inputs:
- `commission` is a cost in account currency, >= 0 (cTrader reports charges as negative numbers: the
  connector passes abs()); `swap` is signed (positive = credited);
- the stored `pnl` is NET: gross_pnl - commission + swap, so the sum of a session's trade pnl equals the
  balance change it caused (lesson E46); `pnl_pips` is gross, in pips (given, or computed from
  prices and pip_size);
- times are timezone-aware; `timestamp` is when the trade happened (execution time for a real deal,
  the closing bar's time for a paper trade; never the logging time).

Ids are derived (uuid5), not random: the same broker deal or the same paper trade replayed after a
restart (warmup fast-forward) maps to the same id, and the store deduplicates it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from services.persistence import events as ev
from services.persistence.records import RecordInvalid, Trade, UtcTime, validate

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


class PaperTrade(BaseModel):
    """A closed paper trade from the paper trader (`paper.trade.<SYMBOL>` body)."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    symbol: Annotated[str, Field(min_length=1)]
    timeframe: str | None = None
    account: str | None = None  # paper account name, if the paper trader keeps several
    direction: Literal[-1, 1]
    intensity: Annotated[int, Field(ge=0, le=3)] = 0
    volume: Annotated[float, Field(ge=0)]
    entry_time: UtcTime  # bar time of the entry
    exit_time: UtcTime  # bar time of the exit
    entry_price: float
    exit_price: float
    gross_pnl: Money
    commission: Annotated[float, Field(ge=0)] = 0.0  # round trip, both halves
    swap: Money = 0.0
    pnl_pips: float | None = None
    pip_size: Positive | None = None
    hmm_state: int | None = None
    comment: str | None = None


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


def paper_trade(trade: Mapping[str, Any] | PaperTrade, *, session_id: str) -> Trade:
    p = _parse(PaperTrade, trade, "paper trade")
    key = f"{p.account or ''}:{p.symbol}:{p.timeframe or ''}:{p.direction}:{p.entry_time.isoformat()}:" \
          f"{p.exit_time.isoformat()}"
    rid = ev.derived_id("paper", key)
    pip_value = p.pnl_pips
    if pip_value is None:
        pip_value = pips(p.direction, p.entry_price, p.exit_price, p.pip_size)
    return _trade(
        id=rid, session_id=session_id, trade_id=rid.hex[:8], timestamp=p.exit_time, bar_time=p.exit_time,
        symbol=p.symbol, direction=p.direction, intensity=p.intensity, action="CLOSE", volume=p.volume,
        entry_price=p.entry_price, exit_price=p.exit_price, pnl=p.gross_pnl - p.commission + p.swap,
        pnl_pips=pip_value or 0.0, commission=p.commission, swap=p.swap, hmm_state=p.hmm_state,
        is_paper=True, comment=p.comment,
    )


