"""The virtual position and the training cost model, as a small value plus pure functions. Stdlib only.

Prices are bar closes. Any change of action (direction or intensity, WAIT included) closes the open position and
opens the new one at the same close: no partial close, no scaling.

- open:  entry = close + (spread + slippage) * point for LONG, close - (...) for SHORT; half the round-trip
  commission is paid at once (it leaves the balance at the open).
- close: exit = close - slippage * point for LONG, close + slippage * point for SHORT; the other half of the
  commission is paid.
- floating PnL (the observation's PnL feature): (close - entry) * direction in pips x pip value x lot, with no
  exit slippage and no commission.

A closed Trade's ``pnl`` is net of the whole round-trip commission, so the sum of trade PnLs equals the change of
the balance (the reference's paper trade left the entry half out: lessons.md 46).
"""

from __future__ import annotations

from dataclasses import dataclass

from common.twin.actions import TRAINING_LOT_SIZES, Target


@dataclass(frozen=True)
class CostModel:
    """The ``training_config`` costs. ``pip_value`` is USD per pip per 1.0 lot (10 for every symbol in training)."""

    point: float = 0.00001
    pip_value: float = 10.0
    spread_points: float = 7.0
    slippage_points: float = 2.0
    commission_per_lot: float = 7.0
    digits: int = 5
    initial_balance: float = 10_000.0
    lot_sizes: tuple[float, ...] = TRAINING_LOT_SIZES

    @property
    def points_per_pip(self) -> int:
        return 10 if self.digits in (3, 5) else 1


@dataclass(frozen=True)
class Position:
    """The virtual position. ``floating_pnl`` is marked at the last bar's close."""

    direction: int = 0
    intensity: int = 0
    entry_price: float = 0.0
    entry_time: int | None = None
    floating_pnl: float = 0.0

    @property
    def is_flat(self) -> bool:
        return self.direction == 0

    def to_dict(self) -> dict[str, object]:
        # asdict() deep-copies field by field: ~20x slower, and this runs in every snapshot
        return {"direction": self.direction, "intensity": self.intensity, "entry_price": self.entry_price,
                "entry_time": self.entry_time, "floating_pnl": self.floating_pnl}

    @classmethod
    def from_dict(cls, d: dict[str, object]) -> Position:
        t = d["entry_time"]
        return cls(int(d["direction"]), int(d["intensity"]), float(d["entry_price"]),
                   None if t is None else int(t), float(d["floating_pnl"]))


FLAT = Position()


@dataclass(frozen=True)
class Trade:
    """A closed virtual trade. ``pnl`` = ``gross_pnl`` - ``commission`` (round trip)."""

    direction: int
    intensity: int
    lot: float
    entry_time: int | None
    entry_price: float
    exit_time: int
    exit_price: float
    pips: float
    gross_pnl: float
    commission: float
    pnl: float

    def to_dict(self) -> dict[str, object]:
        # what asdict() gives, without its deep copy field by field (~10x slower; in every snapshot with a trade)
        return {"direction": self.direction, "intensity": self.intensity, "lot": self.lot,
                "entry_time": self.entry_time, "entry_price": self.entry_price, "exit_time": self.exit_time,
                "exit_price": self.exit_price, "pips": self.pips, "gross_pnl": self.gross_pnl,
                "commission": self.commission, "pnl": self.pnl}


@dataclass(frozen=True)
class PositionUpdate:
    """Result of one bar: the new position, the trade it closed (if any) and the balance change (USD)."""

    position: Position
    closed: Trade | None
    balance_change: float


def pips_between(entry: float, price: float, direction: int, costs: CostModel) -> float:
    return (price - entry) * direction / costs.point / costs.points_per_pip


def floating_pnl(position: Position, price: float, costs: CostModel) -> float:
    if position.is_flat:
        return 0.0
    lot = costs.lot_sizes[position.intensity]
    return pips_between(position.entry_price, price, position.direction, costs) * costs.pip_value * lot


def mark(position: Position, price: float, costs: CostModel) -> Position:
    """The same position with its floating PnL marked at ``price``."""
    if position.is_flat:
        return position
    return Position(position.direction, position.intensity, position.entry_price, position.entry_time,
                    floating_pnl(position, price, costs))


def close_position(position: Position, price: float, time: int, costs: CostModel) -> PositionUpdate:
    if position.is_flat:
        return PositionUpdate(FLAT, None, 0.0)
    lot = costs.lot_sizes[position.intensity]
    exit_price = price - position.direction * costs.slippage_points * costs.point
    pips = pips_between(position.entry_price, exit_price, position.direction, costs)
    gross = pips * costs.pip_value * lot
    half_commission = costs.commission_per_lot * lot / 2
    trade = Trade(position.direction, position.intensity, lot, position.entry_time, position.entry_price,
                  time, exit_price, pips, gross, 2 * half_commission, gross - 2 * half_commission)
    return PositionUpdate(FLAT, trade, gross - half_commission)


def open_position(target: Target, price: float, time: int, costs: CostModel) -> PositionUpdate:
    if target.direction == 0:
        return PositionUpdate(FLAT, None, 0.0)
    lot = costs.lot_sizes[target.intensity]
    entry = price + target.direction * (costs.spread_points + costs.slippage_points) * costs.point
    opened = mark(Position(target.direction, target.intensity, entry, time, 0.0), price, costs)
    return PositionUpdate(opened, None, -costs.commission_per_lot * lot / 2)


def apply_target(position: Position, target: Target, price: float, time: int, costs: CostModel) -> PositionUpdate:
    """One bar of the training execution logic: keep and re-mark, or close and reopen at ``price``."""
    if (position.direction, position.intensity) == (target.direction, target.intensity):
        return PositionUpdate(mark(position, price, costs), None, 0.0)
    closed = close_position(position, price, time, costs)
    opened = open_position(target, price, time, costs)
    return PositionUpdate(opened.position, closed.closed, closed.balance_change + opened.balance_change)
