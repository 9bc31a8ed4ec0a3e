"""Manual commands of the executor, one definition each: name, help, arguments (validated), pure handler.

The REP server and `oracle ctl` can both read `COMMANDS`. A handler never does I/O: it gets a
`CommandContext` (the executor's current values) and returns a `CommandResult` saying what changes and which
positions to close; the service then sends the closes, writes a changed config with `write_atomic`, and
replies `result.reply`.

Semantics:
- pause / resume: pause blocks openings only; closes (sync rule, commands, emergency) go on. Resume does not
  lift a HALT: `reset_halt` does (a person decided).
- close SYMBOL / close_all: every position of that symbol / of the account, orphans included (this is how an
  orphan is cleared). Client order ids are deterministic in (symbol, command time, ticket).
- set_symbol_config: validated against the schema (errors name the key), then persisted atomically.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from common.order_label import OrderAction, client_order_id
from services.executor import risk as risk_rules
from services.executor.risk import RiskState
from services.executor.symbols_config import ConfigError, ExecutorSymbols, with_risk_changes, with_symbol_changes
from services.executor.sync import Direction


class CommandError(ValueError):
    """A command was refused: unknown name or bad arguments. `code` goes into the error reply."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


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


@dataclass(frozen=True)
class CommandResult:
    reply: dict[str, Any]
    paused: bool
    risk: RiskState
    config: ExecutorSymbols
    config_changed: bool = False
    closes: tuple[CloseOrder, ...] = ()


# ---- arguments

class _Args(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NoArgs(_Args):
    pass


class SymbolArgs(_Args):
    symbol: str = Field(min_length=1)


class SetSymbolConfigArgs(_Args):
    symbol: str = Field(min_length=1)
    changes: dict[str, Any] = Field(min_length=1)


class SetRiskConfigArgs(_Args):
    changes: dict[str, Any] = Field(min_length=1)


# ---- handlers

def _unchanged(ctx: CommandContext, reply: dict[str, Any], **changes: Any) -> CommandResult:
    base = CommandResult(reply=reply, paused=ctx.paused, risk=ctx.risk, config=ctx.config)
    return replace(base, **changes)


def _close_orders(positions: Sequence[RealPosition], now: int, reason: str) -> tuple[CloseOrder, ...]:
    return tuple(
        CloseOrder(p.ticket, p.symbol, p.lots,
                   client_order_id(p.symbol, now, OrderAction.MANUAL_CLOSE, seq=p.ticket), reason)
        for p in sorted(positions, key=lambda p: p.ticket))


def pause(ctx: CommandContext, args: NoArgs) -> CommandResult:
    """Stop opening positions (closes continue)."""
    return _unchanged(ctx, {"paused": True, "was_paused": ctx.paused}, paused=True)


def resume(ctx: CommandContext, args: NoArgs) -> CommandResult:
    """Allow openings again (a HALT stays until reset_halt)."""
    return _unchanged(ctx, {"paused": False, "halted": ctx.risk.halted}, paused=False)


def close(ctx: CommandContext, args: SymbolArgs) -> CommandResult:
    """Close every position of SYMBOL, orphans included."""
    mine = [p for p in ctx.positions if p.symbol == args.symbol]
    closes = _close_orders(mine, ctx.now, "MANUAL_CLOSE")
    return _unchanged(ctx, {"symbol": args.symbol, "closing": [c.ticket for c in closes]}, closes=closes)


def close_all(ctx: CommandContext, args: NoArgs) -> CommandResult:
    """Close every position on the account, orphans included."""
    closes = _close_orders(ctx.positions, ctx.now, "MANUAL_CLOSE_ALL")
    return _unchanged(ctx, {"closing": [c.ticket for c in closes]}, closes=closes)


def reset_halt(ctx: CommandContext, args: NoArgs) -> CommandResult:
    """Lift a HALT: openings allowed again (subject to every other check)."""
    return _unchanged(ctx, {"halted": False, "was": ctx.risk.halt_reason},
                      risk=risk_rules.reset_halt(ctx.risk))


def reset_losses(ctx: CommandContext, args: NoArgs) -> CommandResult:
    """Clear the consecutive-loss streak and its cooldown."""
    return _unchanged(ctx, {"consecutive_losses": 0}, risk=risk_rules.reset_losses(ctx.risk))


def _config_error(exc: ConfigError) -> CommandError:
    return CommandError("BAD_CONFIG", str(exc))


def set_symbol_config(ctx: CommandContext, args: SetSymbolConfigArgs) -> CommandResult:
    """Change keys of one symbol's config (validated, persisted atomically)."""
    try:
        config = with_symbol_changes(ctx.config, args.symbol, args.changes)
    except ConfigError as exc:
        raise _config_error(exc) from exc
    reply = {"symbol": args.symbol, "config": config.symbols[args.symbol].model_dump()}
    return _unchanged(ctx, reply, config=config, config_changed=True)


def set_risk_config(ctx: CommandContext, args: SetRiskConfigArgs) -> CommandResult:
    """Change keys of the _risk section (validated, persisted atomically)."""
    try:
        config = with_risk_changes(ctx.config, args.changes)
    except ConfigError as exc:
        raise _config_error(exc) from exc
    return _unchanged(ctx, {"risk": config.risk.model_dump()}, config=config, config_changed=True)


def status(ctx: CommandContext, args: NoArgs) -> CommandResult:
    """The executor's state: pause, halt, loss streak, per-symbol config and last sync decision."""
    symbols = {}
    for symbol in sorted(set(ctx.config.symbols) | set(ctx.modelled_symbols)):
        cfg = ctx.config.symbol(symbol)
        symbols[symbol] = {
            "enabled": cfg.enabled, "lots": [cfg.lot_weak, cfg.lot_moderate, cfg.lot_strong],
            "sl_usd": cfg.sl_usd, "tp_usd": cfg.tp_usd, "max_spread_pips": cfg.max_spread_pips,
            "off_step": cfg.off_step,
            "modelled": symbol in ctx.modelled_symbols, "last_decision": ctx.last_decisions.get(symbol, ""),
        }
    orphans = sorted({p.symbol for p in ctx.positions if p.symbol not in ctx.modelled_symbols})
    reply = {
        "paused": ctx.paused, "halted": ctx.risk.halted, "halt_reason": ctx.risk.halt_reason,
        "consecutive_losses": ctx.risk.consecutive_losses, "cooldown_until": ctx.risk.cooldown_until,
        "positions": len(ctx.positions), "orphans": orphans, "symbols": symbols,
    }
    return _unchanged(ctx, reply)


@dataclass(frozen=True)
class CommandSpec:
    name: str
    args: type[_Args]
    handler: Callable[[CommandContext, Any], CommandResult]

    @property
    def help(self) -> str:
        return (self.handler.__doc__ or "").strip()


COMMANDS: dict[str, CommandSpec] = {spec.name: spec for spec in (
    CommandSpec("pause", NoArgs, pause),
    CommandSpec("resume", NoArgs, resume),
    CommandSpec("close", SymbolArgs, close),
    CommandSpec("close_all", NoArgs, close_all),
    CommandSpec("reset_halt", NoArgs, reset_halt),
    CommandSpec("reset_losses", NoArgs, reset_losses),
    CommandSpec("set_symbol_config", SetSymbolConfigArgs, set_symbol_config),
    CommandSpec("set_risk_config", SetRiskConfigArgs, set_risk_config),
    CommandSpec("status", NoArgs, status),
)}


def run(name: str, args: Mapping[str, Any] | None, ctx: CommandContext) -> CommandResult:
    """Validate and execute one command. Errors: UNKNOWN_COMMAND, BAD_ARGS (names the argument), BAD_CONFIG."""
    spec = COMMANDS.get(name)
    if spec is None:
        raise CommandError("UNKNOWN_COMMAND", f"{name!r}; known: {', '.join(sorted(COMMANDS))}")
    try:
        parsed = spec.args.model_validate(dict(args or {}))
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(p) for p in first["loc"]) or "<args>"
        raise CommandError("BAD_ARGS", f"{name}.{key}: {first['msg']}") from exc
    return spec.handler(ctx, parsed)
