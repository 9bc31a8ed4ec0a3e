"""Simulated accounts: the same signals as the executor, executed exactly like the training environment.

Each symbol has its own account starting at the cost model's `initial_balance`. A signal is applied at its bar's
close through the twin's `apply_target` (common/twin/position.py): any change of direction or intensity closes
and reopens, with the training spread, slippage and commission. There is no cost model here; the twin's is the
only one.

Benchmark choice (lessons 36, 47): paper mirrors the model (the twin's virtual position), not the executor's sync
rule. Real vs paper then measures everything between "what the model earns as trained" and "what the account
earned": execution (spread, slippage, rejections, latency) plus the sync rule (missed entries, no resizing).

A signal whose bar time is not after the account's last one is ignored (a replay or duplicate), so a restarted
paper trader fed its saved state plus the signals since reproduces the same balance and trades.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Generic, TypeVar, overload

from common.records.trades import PaperOpening, PaperTrade
from common.twin.actions import Target, action_from_index, target_of
from common.twin.metrics import Metrics, compute_metrics
from common.twin.position import FLAT, CostModel, Position, apply_target

STATE_VERSION = 1

T = TypeVar("T")


class History(Sequence[T], Generic[T]):
    """An immutable sequence that grows by one in O(1): an account's trades and equity curve.

    `appended` returns a new History sharing this one's storage when this is the newest version (the common case:
    a book replaced by its next version), and copies only when an older version is extended (a branch). Every
    version sees exactly its own first `len` items, so it behaves as a value, like the tuple it replaces (it
    compares equal to a tuple of the same items), without copying the whole history at each bar.
    """

    __slots__ = ("_items", "_n")

    def __init__(self, items: Iterable[T] = ()):
        self._items: list[T] = list(items)
        self._n = len(self._items)

    @classmethod
    def of(cls, items: Iterable[T]) -> History[T]:
        return items if isinstance(items, History) else cls(items)

    def appended(self, item: T) -> History[T]:
        items = self._items if self._n == len(self._items) else self._items[:self._n]
        items.append(item)
        new: History[T] = History.__new__(History)
        new._items, new._n = items, self._n + 1
        return new

    def __len__(self) -> int:
        return self._n

    @overload
    def __getitem__(self, index: int) -> T: ...
    @overload
    def __getitem__(self, index: slice) -> tuple[T, ...]: ...
    def __getitem__(self, index: int | slice) -> T | tuple[T, ...]:
        if isinstance(index, slice):
            start, stop, step = index.indices(self._n)
            return tuple(self._items[start:stop:step])
        if not -self._n <= index < self._n:
            raise IndexError("History index out of range")
        return self._items[index % self._n]

    def __iter__(self) -> Iterator[T]:
        items = self._items
        for i in range(self._n):
            yield items[i]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, History):
            return self._n == other._n and self._items[:self._n] == other._items[:other._n]
        if isinstance(other, tuple):
            return tuple(self) == other
        return NotImplemented

    def __hash__(self) -> int:
        return hash(tuple(self))

    def __repr__(self) -> str:
        return f"History({self._items[:self._n]!r})"


@dataclass(frozen=True)
class PaperAccount:
    symbol: str
    costs: CostModel
    balance: float
    position: Position = FLAT
    last_bar_time: int | None = None
    last_price: float | None = None
    trades: Sequence[PaperTrade] = field(default=())  # a History once the account has stepped
    equity_curve: Sequence[float] = field(default=())  # initial balance, then equity after each bar

    @property
    def equity(self) -> float:
        return self.balance + self.position.floating_pnl

    def metrics(self, bars_per_year: int) -> Metrics:
        """The twin's statistics (common/twin/metrics.py) over this account's trades and equity curve."""
        return compute_metrics(self.trades, self.equity_curve, bars_per_year)

    def to_dict(self) -> dict[str, Any]:
        return {
            "symbol": self.symbol,
            "costs": {**asdict(self.costs), "lot_sizes": list(self.costs.lot_sizes)},
            "balance": self.balance,
            "position": self.position.to_dict(),
            "last_bar_time": self.last_bar_time,
            "last_price": self.last_price,
            "trades": [t.to_dict() for t in self.trades],
            "equity_curve": list(self.equity_curve),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PaperAccount:
        costs = dict(data["costs"])
        costs["lot_sizes"] = tuple(costs["lot_sizes"])
        return cls(
            symbol=data["symbol"],
            costs=CostModel(**costs),
            balance=float(data["balance"]),
            position=Position.from_dict(data["position"]),
            last_bar_time=data["last_bar_time"],
            last_price=data["last_price"],
            trades=History(PaperTrade.from_dict(t) for t in data["trades"]),
            equity_curve=History(float(e) for e in data["equity_curve"]),
        )


def new_account(symbol: str, costs: CostModel) -> PaperAccount:
    return PaperAccount(symbol=symbol, costs=costs, balance=costs.initial_balance,
                        equity_curve=History((costs.initial_balance,)))


@dataclass(frozen=True)
class PaperStep:
    account: PaperAccount
    closed: PaperTrade | None
    applied: bool  # False when the signal was a replay (bar time not after the last one)
    opened: PaperOpening | None = None  # the position this signal opened at its bar (after closing `closed`)


def on_signal(account: PaperAccount, direction: int, intensity: int, price: float, bar_time: int,
              hmm_state: int | None = None) -> PaperStep:
    """Apply one signal (the desired position) at its bar's close."""
    if account.last_bar_time is not None and bar_time <= account.last_bar_time:
        return PaperStep(account, None, applied=False)
    if direction not in (-1, 0, 1) or not 0 <= intensity < len(account.costs.lot_sizes):
        raise ValueError(f"{account.symbol}: bad signal direction {direction} intensity {intensity}")
    if (direction == 0) != (intensity == 0):
        raise ValueError(f"{account.symbol}: WAIT has intensity 0 and only WAIT does "
                         f"(direction {direction}, intensity {intensity})")
    update = apply_target(account.position, Target(direction, intensity), price, bar_time, account.costs)
    # the twin's trade's fields (scalars) as they are: asdict()'s deep copy is not needed
    closed = (PaperTrade(symbol=account.symbol, hmm_state=hmm_state, **update.closed.to_dict()) if update.closed
              else None)
    position = update.position
    opened = None
    if not position.is_flat and position.entry_time == bar_time:  # opened at this bar (a kept one is older)
        opened = PaperOpening(account.symbol, position.direction, position.intensity,
                              account.costs.lot_sizes[position.intensity], bar_time, position.entry_price)
    trades = History.of(account.trades).appended(closed) if closed else account.trades
    balance = account.balance + update.balance_change
    equity = History.of(account.equity_curve).appended(balance + update.position.floating_pnl)
    new = PaperAccount(symbol=account.symbol, costs=account.costs, balance=balance, position=update.position,
                       last_bar_time=bar_time, last_price=price, trades=trades, equity_curve=equity)
    return PaperStep(new, closed, applied=True, opened=opened)


# ---- the book: one account per symbol

@dataclass(frozen=True)
class PaperBook:
    accounts: Mapping[str, PaperAccount]

    def to_dict(self) -> dict[str, Any]:
        return {"version": STATE_VERSION,
                "accounts": {s: a.to_dict() for s, a in sorted(self.accounts.items())}}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PaperBook:
        if data.get("version") != STATE_VERSION:
            raise ValueError(f"paper state version {data.get('version')!r}, expected {STATE_VERSION}")
        return cls({s: PaperAccount.from_dict(a) for s, a in data["accounts"].items()})

    def all_trades(self) -> list[PaperTrade]:
        return sorted((t for a in self.accounts.values() for t in a.trades),
                      key=lambda t: (t.exit_time, t.symbol))


def new_book(costs_by_symbol: Mapping[str, CostModel]) -> PaperBook:
    return PaperBook({s: new_account(s, c) for s, c in costs_by_symbol.items()})


def book_on_signal(book: PaperBook, symbol: str, direction: int, intensity: int, price: float, bar_time: int,
                   hmm_state: int | None = None) -> tuple[PaperBook, PaperStep]:
    """Apply a signal to its symbol's account. An unknown symbol is an error (no model, no cost model)."""
    account = book.accounts.get(symbol)
    if account is None:
        raise KeyError(f"no paper account for {symbol}")
    step = on_signal(account, direction, intensity, price, bar_time, hmm_state)
    if not step.applied:
        return book, step
    return PaperBook({**book.accounts, symbol: step.account}), step


def book_on_action(book: PaperBook, symbol: str, action_index: int, price: float, bar_time: int,
                   hmm_state: int | None = None) -> tuple[PaperBook, PaperStep]:
    """Apply a signal by its policy action (the twin's 7 actions -> target), at its bar's close."""
    target = target_of(action_from_index(action_index))
    return book_on_signal(book, symbol, target.direction, target.intensity, price, bar_time, hmm_state)


def replay(book: PaperBook, signals: Iterable[tuple[str, int, int, float, int, int | None]]) -> PaperBook:
    """Feed (symbol, direction, intensity, price, bar_time, hmm_state) rows in order."""
    for symbol, direction, intensity, price, bar_time, hmm_state in signals:
        book, _ = book_on_signal(book, symbol, direction, intensity, price, bar_time, hmm_state)
    return book
