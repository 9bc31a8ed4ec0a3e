"""The operator's commands, one definition each: help text, arguments (types, validation), the service that runs
it and the wire message it becomes. `oracle ctl` is generated from `COMMANDS`; the executor's and orchestrator's
handlers are keyed by it (`handlers_for`), so a command cannot exist on one side only.

Modelled on Circus's circus/commands/: the help is the command's own text, `message` turns validated arguments
into what goes on the wire, the service executes it. How a command travels (REQ/REP, straight to its service):
- orchestrator commands are ops of their own name (`status`, `stop`, `clear_halt`), the record of `messages.OPS`;
- executor commands ride the executor's `command` op: `CommandArgs(name, args)`, answered by the record the
  command's class states (`result`; the wire decodes it with `messages.COMMAND_RESULTS`, the same records).
Both sides validate with the same `Args` model: the CLI before sending, the service before any effect. An error
names the command and the argument (`close.symbol: ...`). Not here: the protocol ops the services send each other
(hello, ready, step, ping), which no person sends.
"""

from __future__ import annotations

import argparse
import inspect
import re
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, is_dataclass
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from common import bus, messages

ORCHESTRATOR, EXECUTOR = "orchestrator", "executor"


class CommandError(ValueError):
    """A command refused: `code` (UNKNOWN_COMMAND, BAD_ARGS, or the service's own) goes into the error reply."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


# ---- one class per command (as Circus's circus/commands/): its docstring is the help (first line: the summary
# ---- `oracle ctl --help` lists), its fields are its arguments: a str field is a positional argument (or --option
# ---- when it has a default), a map field is KEY=VALUE ... (values read as YAML: 0.01 -> float, true -> bool)


class Args(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    service: typing.ClassVar[str]
    # an executor command's answer: the record of messages.COMMAND_RESULTS under its name (an orchestrator command
    # is an op of its own: its result is that op's, in messages.OPS)
    result: typing.ClassVar[type | None] = None


class OrchestratorCommand(Args):
    service = ORCHESTRATOR


class ExecutorCommand(Args):
    service = EXECUTOR


Symbol = Annotated[str, Field(min_length=1, max_length=64, description="the symbol, e.g. EURUSD")]


class Status(OrchestratorCommand):
    """The system's state and every service's: pid, epoch, uptime, heartbeat age, RSS, restarts.
    When the orchestrator does not answer, each service is asked directly (exit code 1)."""


class Stop(OrchestratorCommand):
    """Ordered shutdown of the whole system, then supervisord exits.
    The executor stops (closing if close_on_exit), the session ends, the broker disconnects."""

    reason: str = Field("MANUAL", min_length=1, description="why, for the record (default MANUAL)")


class ClearHalt(OrchestratorCommand):
    """Leave the system's HALTED (a service that kept failing) after a person has looked.
    The stopped service is started again. The executor's own halt (the risk guard's emergency) is lifted by
    reset-halt."""


class Pause(ExecutorCommand):
    """Stop opening positions (closes continue)."""

    result = messages.Paused


class Resume(ExecutorCommand):
    """Allow openings again (a halt stays until reset-halt)."""

    result = messages.Resumed


class Close(ExecutorCommand):
    """Close every position of SYMBOL, orphans included."""

    result = messages.Closing
    symbol: Symbol


class CloseAll(ExecutorCommand):
    """Close every position on the account, orphans included."""

    result = messages.Closing


class ResetHalt(ExecutorCommand):
    """Lift the executor's halt (the risk guard's emergency drawdown, or a person's): openings allowed again.
    Every other check still applies: set the limits back first (set-risk-config) if the drawdown is still beyond
    them."""

    result = messages.HaltReset


class ResetLosses(ExecutorCommand):
    """Clear the consecutive-loss streak and its cooldown."""

    result = messages.LossesReset


class SetSymbolConfig(ExecutorCommand):
    """Change keys of one symbol's entry in the executor's symbols config.
    Validated against its schema (an error names the key), then written atomically."""

    result = messages.SymbolConfigSet
    symbol: Symbol
    changes: dict[str, Any] = Field(min_length=1, description="keys of the symbol's entry, e.g. sl_usd=10 enabled=true")


class SetRiskConfig(ExecutorCommand):
    """Change keys of the _risk section of the executor's symbols config (drawdown limits, loss streak).
    Validated against its schema (an error names the key), then written atomically."""

    result = messages.RiskConfigSet
    changes: dict[str, Any] = Field(min_length=1, description="keys of the _risk section, e.g. dd_emergency_pct=10")


class ExecutorStatus(ExecutorCommand):
    """The executor's trading state: pause, halt, loss streak, positions, per-symbol config, last sync decision."""

    result = messages.TradingState


@dataclass(frozen=True)
class Command:
    name: str  # the wire name; the CLI's subcommand is the same with '-' for '_'
    service: str  # the service that executes it
    args: type[Args]
    help: str  # the class's docstring: first line the summary, the rest details in `oracle ctl NAME --help`

    @property
    def cli_name(self) -> str:
        return self.name.replace("_", "-")

    @property
    def summary(self) -> str:
        return self.help.strip().splitlines()[0]

    @property
    def op(self) -> str:
        return messages.OP_COMMAND.name if self.service == EXECUTOR else self.name

    def validate(self, raw: Mapping[str, Any] | None) -> Args:
        """The arguments as this command's model; BAD_ARGS naming the argument."""
        try:
            return self.args.model_validate(dict(raw or {}))
        except ValidationError as exc:
            first = exc.errors()[0]
            key = ".".join(str(p) for p in first["loc"]) or "<args>"
            raise CommandError("BAD_ARGS", f"{self.name}.{key}: {first['msg']}") from exc

    def message(self, args: Args) -> tuple[str, Any]:
        """The op and its argument record, as the service's REP socket takes them."""
        values = args.model_dump()
        if self.service == EXECUTOR:
            return self.op, messages.CommandArgs(self.name, values)
        return self.op, messages.OPS[self.op].args(**values)

    # ---- the CLI side

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        for name, info in self.args.model_fields.items():
            if typing.get_origin(info.annotation) is dict:
                parser.add_argument(name, nargs="+", metavar="KEY=VALUE", help=info.description)
            elif info.is_required():
                parser.add_argument(name, metavar=name.upper(), help=info.description)
            else:
                parser.add_argument(f"--{name.replace('_', '-')}", dest=name, default=info.default,
                                    help=info.description)

    def from_cli(self, ns: argparse.Namespace) -> Args:
        raw: dict[str, Any] = {}
        for name, info in self.args.model_fields.items():
            value = getattr(ns, name)
            raw[name] = _settings(self.name, name, value) if typing.get_origin(info.annotation) is dict else value
        return self.validate(raw)


def _settings(command: str, arg: str, items: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise CommandError("BAD_ARGS", f"{command}.{arg}: {item!r} is not KEY=VALUE")
        out[key] = yaml.safe_load(text)
    return out


def _command(args: type[Args]) -> Command:
    name = re.sub(r"(?<!^)(?=[A-Z])", "_", args.__name__).lower()  # ClearHalt -> clear_halt
    return Command(name, args.service, args, inspect.cleandoc(args.__doc__ or ""))


COMMANDS: dict[str, Command] = {c.name: c for c in map(_command, (
    Status, Stop, ClearHalt, Pause, Resume, Close, CloseAll, ResetHalt, ResetLosses, SetSymbolConfig, SetRiskConfig,
    ExecutorStatus))}


def parse(name: str, raw: Mapping[str, Any] | None, service: str) -> tuple[Command, Args]:
    """A command for `service` and its validated arguments; UNKNOWN_COMMAND or BAD_ARGS otherwise."""
    command = COMMANDS.get(name)
    if command is None or command.service != service:
        known = sorted(c.name for c in COMMANDS.values() if c.service == service)
        raise CommandError("UNKNOWN_COMMAND", f"{name!r}; {service} knows {', '.join(known)}")
    return command, command.validate(raw)


H = typing.TypeVar("H")


def handlers_for(service: str, handlers: Mapping[str, H]) -> dict[str, H]:
    """`handlers` (by command name) checked against the registry: one for each of `service`'s commands, none else."""
    registered = {c.name for c in COMMANDS.values() if c.service == service}
    missing, unknown = registered - set(handlers), set(handlers) - registered
    if missing or unknown:
        raise LookupError(f"{service}'s command handlers do not match common/commands.py: "
                          f"missing {sorted(missing)}, not registered {sorted(unknown)}")
    return dict(handlers)


def serve(service: str, handlers: Mapping[str, Callable[[Any], Any]]) -> dict[str, Callable[[Any], Any]]:
    """REP op handlers for a service whose commands are ops of their own name: each validates its record with the
    command's model (an error is the reply, naming the argument) and passes the model on."""
    checked = handlers_for(service, handlers)

    def op(command: Command, handler: Callable[[Any], Any]) -> Callable[[Any], Any]:
        def run(record: Any) -> Any:
            try:
                args = command.validate(messages.to_wire(record))
            except CommandError as exc:
                raise bus.OpError(exc.code, exc.message) from None
            return handler(args)
        return run

    return {COMMANDS[name].op: op(COMMANDS[name], h) for name, h in checked.items()}


@dataclass(frozen=True)
class CommandResult:
    """What `oracle ctl` got back: the service's reply, or why there is none."""

    command: str
    service: str
    ok: bool
    reply: dict[str, Any] = field(default_factory=dict)  # the answer as plain maps, for printing and --json
    error: str = ""  # CODE: message (refused), or why nothing answered
    record: Any = None  # the answer as its typed record (messages.*), when the op has one

    @classmethod
    def answered(cls, command: Command, reply: Any) -> CommandResult:
        """The service's reply, a typed record (kept; its plain maps in `reply`) or a map."""
        if is_dataclass(reply) and not isinstance(reply, type):
            return cls(command.name, command.service, True, messages.to_wire(reply), record=reply)
        return cls(command.name, command.service, True, dict(reply or {}))

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: the plain maps only (`record` is the same answer)."""
        return {"command": self.command, "service": self.service, "ok": self.ok, "reply": self.reply,
                "error": self.error}
