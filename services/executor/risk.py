"""Pre-trade risk guard: runs before every opening, never before a close.

State is a small frozen dataclass changed only by pure functions (`start_session`, `on_equity`,
`on_close`, `halt`, `reset_halt`, `reset_losses`). Time is passed in (`now`, seconds since the epoch);
nothing reads a clock.

Checks of `check_open`, first failure wins:
1. HALTED: a halt (emergency drawdown, restart storm, a person) blocks every opening until `reset_halt`.
2. Drawdown: from the session start balance (`dd_limit_pct`) and from peak equity (`dd_peak_limit_pct`);
   from the session start balance >= `dd_emergency_pct` -> CLOSE_ALL_AND_HALT. `watch` runs the emergency
   check on every equity update too, so the emergency does not wait for the next opening.
3. Cooldown: `max_consecutive_losses` losing closes in a row (broker SL/TP and manual closes count: the
   service calls `on_close` for every close it sees, deduplicated by close id) block openings for
   `cooldown_minutes`.
4. Spread from the live bid/ask, in pips, against the symbol's `max_spread_pips`.
5. Margin: free margin must cover the required margin plus `margin_buffer_pct`.
Any missing input fails closed (BLOCK with a NO_* reason), never open.

Money is net: equity is the broker's (balance + the open positions' net unrealized PnL: price move, swap and
commission), and a close counts by its net profit (`PositionClosed.net_profit`), never its gross.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from enum import StrEnum

from services.executor.symbols_config import RiskConfig

_MAX_REMEMBERED_CLOSES = 64


class RiskAction(StrEnum):
    ALLOW = "ALLOW"
    BLOCK = "BLOCK"
    CLOSE_ALL_AND_HALT = "CLOSE_ALL_AND_HALT"


@dataclass(frozen=True)
class RiskVerdict:
    action: RiskAction
    reason: str = ""
    detail: str = ""

    @property
    def allowed(self) -> bool:
        return self.action == RiskAction.ALLOW


ALLOW = RiskVerdict(RiskAction.ALLOW)


@dataclass(frozen=True)
class RiskState:
    session_start_balance: float | None
    peak_equity: float | None
    equity: float | None
    consecutive_losses: int = 0
    cooldown_until: float | None = None
    halted: bool = False
    halt_reason: str = ""
    recent_close_ids: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        return {**self.__dict__, "recent_close_ids": list(self.recent_close_ids)}

    @classmethod
    def from_dict(cls, data: dict) -> RiskState:
        return cls(**{**data, "recent_close_ids": tuple(data.get("recent_close_ids", ()))})


@dataclass(frozen=True)
class Quote:
    bid: float | None
    ask: float | None
    time: float | None  # seconds since the epoch of the last update of either side


@dataclass(frozen=True)
class OpenContext:
    """Live data for one opening."""

    now: float
    quote: Quote | None
    pip_position: int | None
    max_spread_pips: float
    free_margin: float | None
    required_margin: float | None


def _ok(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def start_session(balance: float | None, equity: float | None = None) -> RiskState:
    """Risk state at session start. The live balance is the reference (not a configured one)."""
    peak = None
    if _ok(balance):
        peak = max(balance, equity) if _ok(equity) else balance
    # unknown equity stays unknown: openings fail closed until the first on_equity
    return RiskState(session_start_balance=balance, peak_equity=peak, equity=equity if _ok(equity) else None)


def on_equity(state: RiskState, equity: float | None) -> RiskState:
    if not _ok(equity):
        return replace(state, equity=None)  # unknown equity: openings fail closed until it is known again
    peak = equity if state.peak_equity is None else max(state.peak_equity, equity)
    return replace(state, equity=equity, peak_equity=peak)


def on_close(state: RiskState, pnl: float, now: float, limits: RiskConfig,
             close_id: str | None = None) -> RiskState:
    """Every closed position, whoever closed it; `pnl` is its NET profit (after commission and swap). A loss
    extends the streak; a win or break-even ends it.

    When the streak reaches `max_consecutive_losses`, the cooldown starts and the streak restarts from 0.
    The same `close_id` seen twice (own ack + broker event) counts once.
    """
    if close_id is not None:
        if close_id in state.recent_close_ids:
            return state
        state = replace(state, recent_close_ids=(*state.recent_close_ids, close_id)[-_MAX_REMEMBERED_CLOSES:])
    if pnl >= 0:
        return replace(state, consecutive_losses=0)
    losses = state.consecutive_losses + 1
    if losses >= limits.max_consecutive_losses:
        return replace(state, consecutive_losses=0, cooldown_until=now + limits.cooldown_minutes * 60)
    return replace(state, consecutive_losses=losses)


def halt(state: RiskState, reason: str) -> RiskState:
    return replace(state, halted=True, halt_reason=reason)


def reset_halt(state: RiskState) -> RiskState:
    """A person decided to trade again."""
    return replace(state, halted=False, halt_reason="")


def reset_losses(state: RiskState) -> RiskState:
    """A person cleared the loss streak and the cooldown."""
    return replace(state, consecutive_losses=0, cooldown_until=None)


@dataclass(frozen=True)
class Drawdown:
    from_start_pct: float
    from_peak_pct: float


def drawdown(state: RiskState) -> Drawdown | None:
    """Drawdowns in percent (positive = below the reference); None when any input is missing."""
    start, peak, equity = state.session_start_balance, state.peak_equity, state.equity
    if not (_ok(start) and _ok(peak) and _ok(equity)) or start <= 0 or peak <= 0:
        return None
    return Drawdown(from_start_pct=(start - equity) / start * 100, from_peak_pct=(peak - equity) / peak * 100)


def watch(state: RiskState, limits: RiskConfig) -> RiskVerdict:
    """Run on every equity update: the emergency check, independent of any opening."""
    if state.halted:
        return RiskVerdict(RiskAction.BLOCK, "HALTED", state.halt_reason)
    dd = drawdown(state)
    if dd is not None and dd.from_start_pct >= limits.dd_emergency_pct:
        return RiskVerdict(RiskAction.CLOSE_ALL_AND_HALT, "EMERGENCY_DD",
                           f"drawdown {dd.from_start_pct:.2f}% >= {limits.dd_emergency_pct}% "
                           "of session start")
    return ALLOW


def spread_pips(quote: Quote | None, pip_position: int | None) -> float | None:
    if quote is None or pip_position is None or not (_ok(quote.bid) and _ok(quote.ask)):
        return None
    return (quote.ask - quote.bid) / 10.0 ** -pip_position


def required_margin(lots: float | None, contract_size: float | None, price: float | None,
                    quote_to_deposit: float | None, leverage: float | None) -> float | None:
    """Margin in deposit currency for `lots` at `price`: notional (lots * contract size * price, in the quote
    currency, converted to the deposit currency) / leverage.

    Prefer the broker's own figure (ProtoOAExpectedMarginReq) when the service has it; this is the fallback
    from the account leverage. None when any input is missing or not positive (the check then fails closed).
    """
    values = (lots, contract_size, price, quote_to_deposit, leverage)
    if any(v is None or not math.isfinite(v) or v <= 0 for v in values):
        return None
    return lots * contract_size * price * quote_to_deposit / leverage


def check_open(state: RiskState, limits: RiskConfig, ctx: OpenContext) -> RiskVerdict:
    """May an opening be sent now? First failing check wins."""
    verdict = watch(state, limits)
    if not verdict.allowed:
        return verdict
    dd = drawdown(state)
    if dd is None:
        return RiskVerdict(RiskAction.BLOCK, "NO_ACCOUNT_DATA",
                           "session start balance, peak equity or equity missing")
    if dd.from_start_pct >= limits.dd_limit_pct:
        return RiskVerdict(RiskAction.BLOCK, "DD_LIMIT",
                           f"drawdown {dd.from_start_pct:.2f}% >= {limits.dd_limit_pct}% of session start")
    if dd.from_peak_pct >= limits.dd_peak_limit_pct:
        return RiskVerdict(RiskAction.BLOCK, "DD_PEAK_LIMIT",
                           f"drawdown {dd.from_peak_pct:.2f}% >= {limits.dd_peak_limit_pct}% of peak equity")
    if state.cooldown_until is not None and ctx.now < state.cooldown_until:
        return RiskVerdict(RiskAction.BLOCK, "COOLDOWN",
                           f"{limits.max_consecutive_losses} losses in a row; "
                           f"{state.cooldown_until - ctx.now:.0f} s left")
    verdict = _check_spread(limits, ctx)
    if not verdict.allowed:
        return verdict
    return _check_margin(limits, ctx)


def _check_spread(limits: RiskConfig, ctx: OpenContext) -> RiskVerdict:
    quote = ctx.quote
    if quote is None or not (_ok(quote.bid) and _ok(quote.ask)):
        return RiskVerdict(RiskAction.BLOCK, "NO_QUOTE", "no live bid/ask")
    if quote.bid <= 0 or quote.ask < quote.bid:
        return RiskVerdict(RiskAction.BLOCK, "BAD_QUOTE", f"bid {quote.bid} ask {quote.ask}")
    if not _ok(quote.time):
        return RiskVerdict(RiskAction.BLOCK, "NO_QUOTE", "bid/ask without a time")
    age = ctx.now - quote.time
    if age > limits.max_quote_age_s:
        return RiskVerdict(RiskAction.BLOCK, "STALE_QUOTE", f"last bid/ask {age:.0f} s old")
    spread = spread_pips(quote, ctx.pip_position)
    if spread is None:
        return RiskVerdict(RiskAction.BLOCK, "NO_SYMBOL_DATA", "pip_position missing")
    if not ctx.max_spread_pips > 0:
        return RiskVerdict(RiskAction.BLOCK, "NO_SYMBOL_DATA", f"max_spread_pips {ctx.max_spread_pips}")
    if spread > ctx.max_spread_pips:
        return RiskVerdict(RiskAction.BLOCK, "SPREAD",
                           f"spread {spread:.1f} pips > max {ctx.max_spread_pips}")
    return ALLOW


def _check_margin(limits: RiskConfig, ctx: OpenContext) -> RiskVerdict:
    if not (_ok(ctx.free_margin) and _ok(ctx.required_margin)) or ctx.required_margin <= 0:
        return RiskVerdict(RiskAction.BLOCK, "NO_MARGIN_DATA",
                           f"free {ctx.free_margin} required {ctx.required_margin}")
    needed = ctx.required_margin * (1 + limits.margin_buffer_pct / 100)
    if ctx.free_margin < needed:
        return RiskVerdict(RiskAction.BLOCK, "MARGIN",
                           f"free {ctx.free_margin:.2f} < required {ctx.required_margin:.2f} "
                           f"+{limits.margin_buffer_pct}%")
    return ALLOW
