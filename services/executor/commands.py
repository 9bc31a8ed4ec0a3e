"""The executor's manual commands: one pure handler per command of common/commands.py (the registry holds each
command's help and arguments; `HANDLERS` is keyed by it).

A handler never does I/O: it gets a `CommandContext` (the executor's current values) and validated arguments, and
returns a `CommandOutcome` saying what changes and which positions to close; the service then sends the closes,
writes a changed config with `write_atomic`, and replies `outcome.reply`, the command's result record
(`messages.COMMAND_RESULTS`; a close's acks and executor_status's process facts added by the service).

Semantics:
- pause / resume: pause blocks openings only; closes (sync rule, commands, emergency) go on. Resume does not
  lift a HALT: `reset_halt` does (a person decided).
- close SYMBOL / close_all: every position of that symbol / of the account, orphans included (this is how an
  orphan is cleared). Client order ids are deterministic in (symbol, command time, ticket).
- set_symbol_config / set_risk_config: validated against the schema (errors name the key), then persisted
  atomically.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from common import commands as registry
from common import messages
from common.commands import (
    Args,
    Close,
    CloseAll,
    CommandError,
    ExecutorStatus,
    Pause,
    ResetHalt,
    ResetLosses,
    Resume,
    SetRiskConfig,
    SetSymbolConfig,
)
from common.order_label import OrderAction, client_order_id
from services.executor import risk as risk_rules
from services.executor.risk import RiskState
from services.executor.symbols_config import ConfigError, ExecutorSymbols, with_risk_changes, with_symbol_changes
from services.executor.sync import Direction


@dataclass(frozen=True)
class RealPosition:
    ticket: int
    symbol: str
    direction: Direction
    lots: float
    label: str = ""


@dataclass(frozen=True)
class CloseOrder:
    ticket: int
    symbol: str
    lots: float  # the whole position (a close is always of the whole position)
    client_order_id: str
    reason: str


@dataclass(frozen=True)
class CommandContext:
    now: int  # seconds since the epoch, from the service's clock
    paused: bool
    risk: RiskState
    config: ExecutorSymbols
    positions: Sequence[RealPosition] = ()
    modelled_symbols: frozenset[str] = frozenset()
    last_decisions: Mapping[str, str] = field(default_factory=dict)  # symbol -> last sync reason
    system_halted: bool = False  # the system is HALTED (openings refused whatever the executor's own halt)

    @property
    def halted(self) -> bool:
        """Openings refused by a halt: the executor's own or the system's."""
        return self.risk.halted or self.system_halted


@dataclass(frozen=True)
class CommandOutcome:
    reply: Any  # the command's result record (messages.COMMAND_RESULTS; its `result` in common/commands.py)
    paused: bool
    risk: RiskState
    config: ExecutorSymbols
    config_changed: bool = False
    closes: tuple[CloseOrder, ...] = ()


# ---- handlers

def _unchanged(ctx: CommandContext, reply: Any, **changes: Any) -> CommandOutcome:
    base = CommandOutcome(reply=reply, paused=ctx.paused, risk=ctx.risk, config=ctx.config)
    return replace(base, **changes)


def _close_orders(positions: Sequence[RealPosition], now: int, reason: str) -> tuple[CloseOrder, ...]:
    return tuple(
        CloseOrder(p.ticket, p.symbol, p.lots,
                   client_order_id(p.symbol, now, OrderAction.MANUAL_CLOSE, seq=p.ticket), reason)
        for p in sorted(positions, key=lambda p: p.ticket))


def pause(ctx: CommandContext, args: Pause) -> CommandOutcome:
    return _unchanged(ctx, messages.Paused("pause", paused=True, was_paused=ctx.paused), paused=True)


def resume(ctx: CommandContext, args: Resume) -> CommandOutcome:
    return _unchanged(ctx, messages.Resumed("resume", paused=False, halted=ctx.halted), paused=False)


def close(ctx: CommandContext, args: Close) -> CommandOutcome:
    mine = [p for p in ctx.positions if p.symbol == args.symbol]
    closes = _close_orders(mine, ctx.now, "MANUAL_CLOSE")
    reply = messages.Closing("close", [c.ticket for c in closes], symbol=args.symbol)
    return _unchanged(ctx, reply, closes=closes)


def close_all(ctx: CommandContext, args: CloseAll) -> CommandOutcome:
    closes = _close_orders(ctx.positions, ctx.now, "MANUAL_CLOSE_ALL")
    return _unchanged(ctx, messages.Closing("close_all", [c.ticket for c in closes]), closes=closes)


def reset_halt(ctx: CommandContext, args: ResetHalt) -> CommandOutcome:
    reply = messages.HaltReset("reset_halt", halted=ctx.system_halted, was=ctx.risk.halt_reason)
    return _unchanged(ctx, reply, risk=risk_rules.reset_halt(ctx.risk))


def reset_losses(ctx: CommandContext, args: ResetLosses) -> CommandOutcome:
    risk = risk_rules.reset_losses(ctx.risk)
    return _unchanged(ctx, messages.LossesReset("reset_losses", risk.consecutive_losses), risk=risk)


def _config_error(exc: ConfigError) -> CommandError:
    return CommandError("BAD_CONFIG", str(exc))


def set_symbol_config(ctx: CommandContext, args: SetSymbolConfig) -> CommandOutcome:
    try:
        config = with_symbol_changes(ctx.config, args.symbol, args.changes)
    except ConfigError as exc:
        raise _config_error(exc) from exc
    reply = messages.SymbolConfigSet("set_symbol_config", args.symbol, config.symbols[args.symbol].model_dump())
    return _unchanged(ctx, reply, config=config, config_changed=True)


def set_risk_config(ctx: CommandContext, args: SetRiskConfig) -> CommandOutcome:
    try:
        config = with_risk_changes(ctx.config, args.changes)
    except ConfigError as exc:
        raise _config_error(exc) from exc
    reply = messages.RiskConfigSet("set_risk_config", config.risk.model_dump())
    return _unchanged(ctx, reply, config=config, config_changed=True)


def _symbol(ctx: CommandContext, symbol: str) -> messages.TradingSymbol:
    cfg = ctx.config.symbol(symbol)
    return messages.TradingSymbol(
        enabled=cfg.enabled, lots=[cfg.lot_weak, cfg.lot_moderate, cfg.lot_strong], sl_usd=cfg.sl_usd,
        tp_usd=cfg.tp_usd, max_spread_pips=cfg.max_spread_pips, off_step=cfg.off_step,
        modelled=symbol in ctx.modelled_symbols, last_decision=ctx.last_decisions.get(symbol, ""))


def risk_status(risk: RiskState) -> messages.RiskStatus:
    return messages.RiskStatus(
        session_start_balance=risk.session_start_balance, peak_equity=risk.peak_equity, equity=risk.equity,
        consecutive_losses=risk.consecutive_losses, cooldown_until=risk.cooldown_until, halted=risk.halted,
        halt_reason=risk.halt_reason, recent_close_ids=list(risk.recent_close_ids))


def executor_status(ctx: CommandContext, args: ExecutorStatus) -> CommandOutcome:
    """The trading state the context knows; the service adds its own facts (synced, due closes, markets, ...)."""
    symbols = sorted(set(ctx.config.symbols) | set(ctx.modelled_symbols))
    positions = [messages.TradingPosition(p.ticket, p.symbol, int(p.direction), p.lots, p.label)
                 for p in ctx.positions]
    reply = messages.TradingState(
        "executor_status", paused=ctx.paused, halted=ctx.halted, halt_reason=ctx.risk.halt_reason,
        consecutive_losses=ctx.risk.consecutive_losses, cooldown_until=ctx.risk.cooldown_until,
        positions=positions, orphans=sorted({p.symbol for p in ctx.positions if p.symbol not in ctx.modelled_symbols}),
        modelled=sorted(ctx.modelled_symbols), symbols={s: _symbol(ctx, s) for s in symbols},
        risk=risk_status(ctx.risk))
    return _unchanged(ctx, reply)


HANDLERS: dict[str, Callable[[CommandContext, Any], CommandOutcome]] = registry.handlers_for(registry.EXECUTOR, {
    "pause": pause,
    "resume": resume,
    "close": close,
    "close_all": close_all,
    "reset_halt": reset_halt,
    "reset_losses": reset_losses,
    "set_symbol_config": set_symbol_config,
    "set_risk_config": set_risk_config,
    "executor_status": executor_status,
})


def validate(name: str, args: Mapping[str, Any] | None) -> Args:
    """The command's arguments checked against its definition; UNKNOWN_COMMAND or BAD_ARGS naming the argument."""
    return registry.parse(name, args, registry.EXECUTOR)[1]


def run(name: str, args: Args | Mapping[str, Any] | None, ctx: CommandContext) -> CommandOutcome:
    """Execute one command (its arguments validated first when given as a map). Errors: UNKNOWN_COMMAND, BAD_ARGS
    (names the argument), BAD_CONFIG."""
    parsed = args if isinstance(args, Args) else validate(name, args)
    return HANDLERS[name](ctx, parsed)
