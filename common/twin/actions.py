"""The 7 actions of the policy (Discrete(7)) and the position each one asks for. Stdlib only."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

# Lot per intensity 0..3, used by training and by the virtual position. Never change: the model learnt it.
TRAINING_LOT_SIZES: tuple[float, ...] = (0.0, 0.01, 0.03, 0.05)


class Action(IntEnum):
    WAIT = 0
    LONG_WEAK = 1
    LONG_MODERATE = 2
    LONG_STRONG = 3
    SHORT_WEAK = 4
    SHORT_MODERATE = 5
    SHORT_STRONG = 6


@dataclass(frozen=True)
class Target:
    """The position an action asks for: direction -1/0/+1 and intensity 0..3."""

    direction: int
    intensity: int


TARGETS: dict[Action, Target] = {
    Action.WAIT: Target(0, 0),
    Action.LONG_WEAK: Target(1, 1),
    Action.LONG_MODERATE: Target(1, 2),
    Action.LONG_STRONG: Target(1, 3),
    Action.SHORT_WEAK: Target(-1, 1),
    Action.SHORT_MODERATE: Target(-1, 2),
    Action.SHORT_STRONG: Target(-1, 3),
}
N_ACTIONS = len(Action)


def action_from_index(index: int) -> Action:
    """The policy's output index as an Action; an index outside 0..6 means WAIT (as in the reference)."""
    try:
        return Action(int(index))
    except ValueError:
        return Action.WAIT


def target_of(action: Action) -> Target:
    return TARGETS[action]


def lot_of(intensity: int, lot_sizes: tuple[float, ...] = TRAINING_LOT_SIZES) -> float:
    return lot_sizes[intensity]


def actions_metadata() -> dict[str, dict[str, object]]:
    """The ``actions`` block of the model metadata."""
    return {
        str(int(a)): {"name": a.name, "direction": t.direction, "intensity": t.intensity}
        for a, t in TARGETS.items()
    }
