"""Signals decided together (pure values): which signals make a batch, the orders each one makes, and the batch's
shared account.

The executor decides every signal waiting at a moment before it sends any order, then sends all the orders at
once (service.py): the positions and the account are asked once per batch, and each opening's margin counts as
used for the openings decided after it, and for those of the next batches while its order is out.

A bar close brings the signals of every symbol of a timeframe one by one, as the preditor steps its models. They
are gathered into one batch (`gathered`): the batch is decided once every symbol expected for the bar has its
signal in, or when the first has waited long enough (the shell's deadline). Expected are the symbols of the same
timeframe decided for the latest bar before this one: a symbol that missed that bar (its market closed, its model
not loaded) is not waited for, and one just booted (no bar decided yet) decides at once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields, replace

from common import messages
from services.executor import inputs
from services.executor.acks import Ack
from services.executor.commands import CloseOrder
from services.executor.plan import OpenOrder


@dataclass
class Decided:
    """A decided signal: its orders (carried out with the others of its batch) and the plan's own ack."""

    sig: messages.Signal
    action: str
    reason: str
    allow_open: bool
    closes: list[CloseOrder] = field(default_factory=list)
    open: OpenOrder | None = None
    data: inputs.SymbolData | None = None
    ack: Ack | None = None

    def intent(self, sides: dict[int, int]) -> dict:
        """Its orders as the state file keeps them until they are answered (`sides`: ticket -> direction)."""
        return {"signal": messages.to_wire(self.sig), "action": self.action, "reason": self.reason,
                "allow_open": self.allow_open,
                "closes": [{**_fields_of(c), "direction": sides.get(c.ticket)} for c in self.closes],
                "open": {**_fields_of(self.open), "direction": int(self.open.direction)} if self.open else None,
                "ack": self.ack.to_dict() if self.ack else None}


def _fields_of(order: CloseOrder | OpenOrder) -> dict:
    """An order's fields as a dict: `dataclasses.asdict`'s, without its deep copy (every field is a plain immutable
    value: str, int, float, None, a Direction), which cost as much as the rest of the intent."""
    return {name: getattr(order, name) for name in _ORDER_FIELDS[type(order)]}


@dataclass
class Batch:
    """The signals decided together: the account is asked once, and each opening's margin counts as used for the
    openings decided after it (their orders are out at the same time)."""

    decided: list[Decided] = field(default_factory=list)
    committed_margin: float = 0.0  # starts with the openings of the batches still in flight
    _account: inputs.AccountData | None = None

    def account(self, fetch: Callable[[float], inputs.AccountData], now: float) -> inputs.AccountData:
        if self._account is None:
            self._account = fetch(now)
        acct = self._account
        if acct.free_margin is None or not self.committed_margin:
            return acct
        return replace(acct, free_margin=acct.free_margin - self.committed_margin)


def expected(handled: Mapping[str, int], timeframes: Mapping[str, str], timeframe: str,
             bar_time: int) -> frozenset[str]:
    """The symbols whose signal for `bar_time` is expected with it: those of `timeframe` (a symbol without a known
    model is of the timeframe "") whose last decided bar is the latest one before `bar_time` among them."""
    peers = {s: t for s, t in handled.items() if timeframes.get(s, "") == timeframe and t < bar_time}
    if not peers:
        return frozenset()
    last_round = max(peers.values())
    return frozenset(s for s, t in peers.items() if t == last_round)


def gathered(waiting: Iterable[tuple[str, int]], expecting: Iterable[str], handled: Mapping[str, int],
             bar_time: int) -> bool:
    """Every symbol of `expecting` has its signal for `bar_time` (or a later one) waiting or already decided.
    `waiting`: (symbol, bar time) of the signals waiting."""
    arrived = {s for s, t in waiting if t >= bar_time}
    return all(s in arrived or handled.get(s, -1) >= bar_time for s in expecting)


_ORDER_FIELDS = {cls: tuple(f.name for f in fields(cls)) for cls in (CloseOrder, OpenOrder)}
