"""One signal -> what the executor sends: the sync rule, lots, risk guard, SL/TP and label composed, pure.

    plan = plan_signal(SignalInputs(...))

- `plan.closes`: positions to close now (sync rule, or every position of the account on an emergency).
- `plan.open`: the market order to send after the closes (only when the sync rule says OPEN and every check
  passed; the sync rule never asks for a close and an open on the same signal).
- `plan.ack`: the final ack when nothing is sent (NOOP, WAIT_SYNC, SKIP with the failing check's reason);
  None when orders are sent: the service acks each order's outcome (`acks.ack_filled` / `ack_failed`).
- `plan.halt`: the risk guard saw the emergency drawdown: the service sets `risk.halt(state, reason)`, sends
  `plan.closes` (every position) and publishes an alert.

Closes never go through the risk guard. A symbol with several positions (hedged account) is in sync only when
they all have the signal's direction; otherwise every one of them is closed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from common.order_label import (
    OrderAction,
    OrderLabel,
    OrderLabelError,
    balance_field,
    client_order_id,
    encode,
)
from services.executor.acks import Ack, ack_skip, ack_without_order
from services.executor.commands import CloseOrder, RealPosition
from services.executor.lots import LotError, VolumeLimits, intensities_of_lots, lots_to_send
from services.executor.risk import (
    OpenContext,
    Quote,
    RiskAction,
    RiskState,
    RiskVerdict,
    check_open,
    drawdown,
    required_margin,
    spread_pips,
)
from services.executor.sltp import PriceData, SltpError
from services.executor.sltp import plan as sltp_plan
from services.executor.symbols_config import RiskConfig, SymbolConfig
from services.executor.sync import FLAT, Direction, Stance, SyncAction, SyncDecision, decide_of


@dataclass(slots=True)
class SignalInputs:
    """Everything one signal's plan reads. The service gathers it; nothing here reads a clock or a socket. Not
    frozen (nothing changes it once built): the executor builds one for every signal, and a frozen dataclass sets
    its 25 fields one `object.__setattr__` call each, which cost as much as the sync decision."""

    symbol: str
    bar_time: int
    signal: Stance
    previous: Stance | None  # previous signal evaluated by this process; None right after boot
    positions: Sequence[RealPosition]  # every open position of the ACCOUNT
    modelled: bool  # the symbol has a loaded model
    paused: bool
    config: SymbolConfig
    risk_limits: RiskConfig
    risk: RiskState
    now: float
    quote: Quote | None
    volume_limits: VolumeLimits | None  # in lots, with the contract size
    price_data: PriceData | None
    balance: float | None
    free_margin: float | None
    broker_required_margin: float | None = None  # from ProtoOAExpectedMarginReq, when available
    twin_previous: Direction | None = None  # the twin's direction at the bar before, from a live signal
    leverage: float | None = None  # account leverage, for the fallback margin estimate
    min_sl_distance: float | None = None  # the broker's minimum price distances (None or 0: none)
    min_tp_distance: float | None = None
    action_index: int | None = None
    hmm_state: int | None = None
    virtual_pnl: float | None = None
    model_hash: str = ""


@dataclass(frozen=True)
class OpenOrder:
    symbol: str
    direction: Direction
    lots: float
    sl_distance: float | None  # price distance from the fill, rounded to the symbol's digits; None: no stop
    tp_distance: float | None
    label: str
    client_order_id: str
    requested_lots: float | None = None  # the configured lots, when they were off the symbol's step
    off_step: str | None = None  # the symbol's off-step rule that made `lots` from them (round_down)


@dataclass(frozen=True)
class SignalPlan:
    decision: SyncDecision
    closes: tuple[CloseOrder, ...] = ()
    open: OpenOrder | None = None
    ack: Ack | None = None
    risk: RiskVerdict | None = None
    halt: bool = False
    required_margin: float | None = None  # of the opening: the next openings decided with it count it as used


def real_stance(positions: Sequence[RealPosition], signal: Stance, config: SymbolConfig,
                limits: VolumeLimits | None) -> Stance:
    """The symbol's real position as the sync rule sees it (see the module docstring for several positions).
    Its intensity is the one whose opening has its lots (the signal's when several do; 0 when none does)."""
    if not positions:
        return FLAT
    directions = {p.direction for p in positions}
    if len(directions) > 1:  # mixed: out of sync whatever the signal says
        other = Direction.SHORT if signal.direction == Direction.LONG else Direction.LONG
        return Stance(other, 0)
    direction = directions.pop()
    found = intensities_of_lots(config, sum(p.lots for p in positions), limits)
    intensity = signal.intensity if signal.intensity in found else (found[0] if found else 0)
    return Stance(direction, intensity)


def emergency_closes(positions: Sequence[RealPosition], now: int) -> tuple[CloseOrder, ...]:
    """Every position of the account, for CLOSE_ALL_AND_HALT (orphans included: the account is at stake)."""
    return tuple(CloseOrder(p.ticket, p.symbol, p.lots,
                            client_order_id(p.symbol, now, OrderAction.EMERGENCY_CLOSE, seq=p.ticket),
                            "EMERGENCY_DD")
                 for p in sorted(positions, key=lambda p: p.ticket))


def sync_decision(x: SignalInputs) -> SyncDecision:
    """The sync rule's decision for the signal: a function of the positions, the signal, the previous one, the
    symbol's config and volume limits, pause and model alone (never of the quote, the account or the clock)."""
    mine = [p for p in x.positions if p.symbol == x.symbol]
    return decide_of(real_stance(mine, x.signal, x.config, x.volume_limits), x.signal, x.previous,
                     enter_on_first_signal=x.config.enter_on_first_signal, paused=x.paused,
                     enabled=x.config.enabled, orphan=not x.modelled, twin_previous=x.twin_previous)


def plan_signal(x: SignalInputs, decision: SyncDecision | None = None) -> SignalPlan:
    """`decision`: `sync_decision` of inputs that differ from `x` at most in what it does not read (the caller
    decided the sync rule on them first: an opening is then planned on the account and quote alone)."""
    if decision is None:
        decision = sync_decision(x)
    if decision.closes:
        mine = [p for p in x.positions if p.symbol == x.symbol]
        closes = tuple(CloseOrder(p.ticket, p.symbol, p.lots,
                                  client_order_id(x.symbol, x.bar_time, OrderAction.CLOSE, seq=p.ticket),
                                  decision.reason)
                       for p in sorted(mine, key=lambda p: p.ticket))
        return SignalPlan(decision, closes=closes)
    if decision.action != SyncAction.OPEN:
        return SignalPlan(decision, ack=ack_without_order(x.symbol, decision, x.bar_time))
    return _plan_open(x, decision)


def _skip(x: SignalInputs, decision: SyncDecision, reason: str, detail: str,
          verdict: RiskVerdict | None = None, off_step: tuple[float | None, str | None] = (None, None)
          ) -> SignalPlan:
    ack = ack_skip(x.symbol, SyncAction.OPEN.value, reason, detail, x.bar_time, *off_step)
    return SignalPlan(decision, ack=ack, risk=verdict)


def _plan_open(x: SignalInputs, decision: SyncDecision) -> SignalPlan:
    try:
        sized = lots_to_send(x.config, x.signal.intensity, x.volume_limits)
    except LotError as exc:
        refused = (exc.requested, x.config.off_step) if exc.code == "OFF_STEP" else (None, None)
        return _skip(x, decision, exc.code, str(exc), off_step=refused)
    assert x.volume_limits is not None  # lots_to_send needs them
    off_step = (sized.requested, sized.rule.value) if sized.off_step else (None, None)

    margin = x.broker_required_margin
    if margin is None and x.quote is not None and x.price_data is not None:
        price = x.quote.ask if x.signal.direction == Direction.LONG else x.quote.bid
        margin = required_margin(sized.lots, x.volume_limits.contract_size, price, x.price_data.quote_to_deposit,
                                 x.leverage)
    pip_position = x.price_data.pip_position if x.price_data else None
    ctx = OpenContext(now=x.now, quote=x.quote, pip_position=pip_position,
                      max_spread_pips=x.config.max_spread_pips, free_margin=x.free_margin, required_margin=margin)
    verdict = check_open(x.risk, x.risk_limits, ctx)
    if verdict.action == RiskAction.CLOSE_ALL_AND_HALT:
        ack = ack_skip(x.symbol, SyncAction.OPEN.value, verdict.reason, verdict.detail, x.bar_time)
        return SignalPlan(decision, closes=emergency_closes(x.positions, int(x.now)), ack=ack, risk=verdict,
                          halt=True)
    if not verdict.allowed:
        return _skip(x, decision, verdict.reason, verdict.detail, verdict, off_step)

    if x.price_data is None:
        return _skip(x, decision, "NO_SYMBOL_DATA", "no price data for SL/TP", verdict, off_step)
    try:
        stops = sltp_plan(x.config.sl_usd, x.config.tp_usd, sized.lots, x.volume_limits.contract_size,
                          x.price_data, x.min_sl_distance, x.min_tp_distance)
    except SltpError as exc:
        return _skip(x, decision, exc.code, str(exc), verdict, off_step)

    cid = client_order_id(x.symbol, x.bar_time, OrderAction.OPEN)
    dd = drawdown(x.risk)
    spread = spread_pips(x.quote, pip_position)
    try:
        label = encode(OrderLabel(
            client_order_id=cid, hmm_state=x.hmm_state, action_index=x.action_index,
            intensity=x.signal.intensity, balance=balance_field(x.balance) if x.balance is not None else None,
            drawdown_pct=round(dd.from_start_pct, 1) if dd else None,
            virtual_pnl=round(x.virtual_pnl, 2) if x.virtual_pnl is not None else None,
            spread_pips=round(spread, 1) if spread is not None else None, model_hash=x.model_hash))
    except OrderLabelError as exc:
        return _skip(x, decision, "BAD_LABEL", str(exc), verdict, off_step)
    order = OpenOrder(symbol=x.symbol, direction=x.signal.direction, lots=sized.lots,
                      sl_distance=stops.sl_distance, tp_distance=stops.tp_distance, label=label,
                      client_order_id=cid, requested_lots=off_step[0], off_step=off_step[1])
    return SignalPlan(decision, open=order, risk=verdict, required_margin=margin)
