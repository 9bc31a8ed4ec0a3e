"""The twin's one step function, used by the preditor, the backtest and (through its parts) the trainer's env.

    state, decision = step(spec, state, bar, policy)

appends the closed bar to the window; once the window is full it computes the market features and the HMM state
(pure functions of the window), builds the observation with the virtual position as it stood after the previous
bar (PnL marked at the previous close), asks ``policy`` for an action and applies it at this bar's close.
Warmup is the same step with the decisions thrown away (``warmup``, i.e. ``run`` without its decisions).

Restart parity: the market part of the state is a function of the last ``window`` bars, which history gives back
after a restart. The virtual position is not: it depends on every decision since the twin started, and its entry
can predate any warmup window, so a twin warmed up from history alone may hold a different position than the one
that ran through. Exact parity therefore needs the snapshot: ``state.to_dict()`` after each bar (plain JSON /
msgpack values, floats round-trip exactly), and on restart ``TwinState.from_dict(saved)`` followed by
``run(spec, state, history, policy)``, which skips the bars the snapshot already saw and replays the missed ones.
Without a usable snapshot (none, another ``model_id``) the fallback is ``warmup`` from a flat twin: same market
state, possibly another virtual position until the two paths meet at a common WAIT or reopen.

A twin equals a backtest bar for bar when both start flat at the same bar: ``backtest.replay(model, bars)``
starts at ``bars[0]``.

Speed (the live step, ~0.2 ms): each bar's HMM emission row is a pure function of the bar and the 20-odd bars
before it, so the state keeps the rows of its window's bars (``EmissionRows``, derived data: never persisted, and
rebuilt from the bars when missing, e.g. after a restart) and computes only the new bar's row, on Python floats
(``last_bar``); the forward filter over the window then runs in C. ``market_series`` (the trainer's path) computes
the same values for all bars with numpy, and the tests hold the two to the same bits.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from common.twin.actions import Action, action_from_index, target_of
from common.twin.bars import Bar, bar_at, bar_row
from common.twin.features import (
    N_MARKET_FEATURES,
    N_POSITION_FEATURES,
    HmmFeatureParams,
    RlFeatureParams,
    hmm_features,
    market_features,
    observation,
    position_features,
)
from common.twin.hmm import (
    DECODE_METHODS,
    FORWARD_FILTER,
    HmmParams,
    UnknownDecodeMethod,
    decode_states,
    filter_states,
    log_emission_row,
    log_emissions,
    scaled_emission_row,
    scaled_emissions,
    single_observation_states,
)
from common.twin.last_bar import last_hmm_row, last_market_row
from common.twin.position import FLAT, CostModel, Position, PositionUpdate, Trade, apply_target

SNAPSHOT_VERSION = 1
DEFAULT_WINDOW = 350

Policy = Callable[[np.ndarray], int]


class StaleBar(ValueError):
    """A bar not newer than the last one the twin saw (a duplicate or out of order)."""


@dataclass(frozen=True)
class TwinSpec:
    """Everything the twin needs from a model, except the policy network."""

    hmm: HmmParams
    decode_method: str
    hmm_features: HmmFeatureParams = HmmFeatureParams()
    rl_features: RlFeatureParams = RlFeatureParams()
    costs: CostModel = CostModel()
    window: int = DEFAULT_WINDOW

    def __post_init__(self) -> None:
        if self.decode_method not in DECODE_METHODS:
            raise UnknownDecodeMethod(f"unknown HMM decode method {self.decode_method!r}")
        if self.hmm.n_features != 3:
            raise ValueError("the HMM must have 3 input features")
        if self.window <= self.hmm_features.first_full_row:
            raise ValueError(f"window {self.window} too short for the HMM feature periods")

    @property
    def n_states(self) -> int:
        return self.hmm.n_states

    @property
    def observation_size(self) -> int:
        return N_MARKET_FEATURES + self.n_states + N_POSITION_FEATURES


@dataclass(frozen=True)
class MarketView:
    """The market part of bar t's observation: 6 features (float64) and the HMM state."""

    features: np.ndarray
    hmm_state: int


@dataclass(frozen=True)
class Decision:
    bar_time: int
    close: float
    action: Action
    direction: int
    intensity: int
    hmm_state: int
    floating_pnl: float  # after this bar's update: the signal's virtual PnL
    realized_pnl: float  # cumulative balance change since the twin started
    equity: float
    closed_trade: Trade | None
    observation: tuple[float, ...]

    def to_dict(self) -> dict[str, object]:
        # asdict() would deep-copy the observation float by float (it runs in every snapshot)
        return {"bar_time": self.bar_time, "close": self.close, "action": int(self.action),
                "direction": self.direction, "intensity": self.intensity, "hmm_state": self.hmm_state,
                "floating_pnl": self.floating_pnl, "realized_pnl": self.realized_pnl, "equity": self.equity,
                "closed_trade": None if self.closed_trade is None else self.closed_trade.to_dict(),
                "observation": list(self.observation)}

    @classmethod
    def from_dict(cls, d: dict[str, object]) -> Decision:
        trade = d["closed_trade"]
        return cls(int(d["bar_time"]), float(d["close"]), Action(int(d["action"])), int(d["direction"]),
                   int(d["intensity"]), int(d["hmm_state"]), float(d["floating_pnl"]), float(d["realized_pnl"]),
                   float(d["equity"]), None if trade is None else Trade(**trade),
                   tuple(float(x) for x in d["observation"]))


@dataclass(frozen=True, eq=False)
class EmissionRows:
    """The scaled HMM emission row of each bar of a window (derived from ``bars`` under ``spec``; not persisted).

    Row i belongs to the window's bar i; it is only read for i >= ``first_full_row``, where it is the same in
    every window that holds the bar (it reads the bar and the ``first_full_row`` bars before it). Tied to the
    exact ``bars`` array and ``spec`` object it was computed for: any other state rebuilds it.
    """

    spec: Any  # TwinSpec (identity)
    bars: np.ndarray  # identity
    b: np.ndarray  # (len(bars), K); NaN where the row is not full

    def belongs_to(self, spec: TwinSpec, bars: np.ndarray) -> bool:
        return self.spec is spec and self.bars is bars


@dataclass(frozen=True, eq=False)
class TwinState:
    bars: np.ndarray = field(default_factory=lambda: np.empty((0, 6)))
    position: Position = FLAT
    realized_pnl: float = 0.0
    last_bar_time: int | None = None
    decisions: int = 0
    model_id: str = ""
    last_decision: Decision | None = None  # what the preditor answers "last signal" with, also after a restart
    emission_rows: EmissionRows | None = field(default=None, repr=False)  # a cache: derived from bars

    def equity(self, costs: CostModel) -> float:
        return costs.initial_balance + self.realized_pnl + self.position.floating_pnl

    def to_dict(self) -> dict[str, object]:
        return {
            "version": SNAPSHOT_VERSION,
            "model_id": self.model_id,
            "bars": [[int(r[0]), *r[1:]] for r in self.bars.tolist()],
            **self.to_dict_after_bars(),
        }

    def to_dict_after_bars(self) -> dict[str, object]:
        """The entries of ``to_dict`` that follow ``bars``, in order (for an encoder that writes the bars itself)."""
        return {
            "position": self.position.to_dict(),
            "realized_pnl": self.realized_pnl,
            "last_bar_time": self.last_bar_time,
            "decisions": self.decisions,
            "last_decision": None if self.last_decision is None else self.last_decision.to_dict(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, object], model_id: str | None = None) -> TwinState:
        """Rebuild a snapshot; ``model_id`` (if given) must match the one it was taken with."""
        if d.get("version") != SNAPSHOT_VERSION:
            raise ValueError(f"unsupported twin snapshot version {d.get('version')!r}")
        if model_id is not None and d["model_id"] != model_id:
            raise ValueError(f"twin snapshot belongs to model {d['model_id']!r}, not {model_id!r}")
        bars = np.asarray(d["bars"], dtype=np.float64).reshape(-1, 6)
        t, last = d["last_bar_time"], d.get("last_decision")
        return cls(bars, Position.from_dict(d["position"]), float(d["realized_pnl"]),
                   None if t is None else int(t), int(d["decisions"]), str(d["model_id"]),
                   None if last is None else Decision.from_dict(last))


def initial_state(model_id: str = "") -> TwinState:
    return TwinState(model_id=model_id)


def emission_rows(spec: TwinSpec, window: np.ndarray) -> EmissionRows:
    """The scaled emission rows of a window's bars, all at once (numpy), e.g. after a restart."""
    first = spec.hmm_features.first_full_row
    b = np.full((len(window), spec.n_states), np.nan)
    if len(window) > first:
        rows = np.arange(first, len(window))
        x = hmm_features(window, rows, np.zeros_like(rows), spec.hmm_features)
        b[first:] = scaled_emissions(log_emissions(spec.hmm, x))
    return EmissionRows(spec, window, b)


def next_emission_rows(spec: TwinSpec, state: TwinState, window: np.ndarray) -> EmissionRows | None:
    """``emission_rows(spec, window)`` for the state's window plus one bar: the new bar's row alone when the state
    has its rows, all of them otherwise. None for a decode method that does not filter."""
    if spec.decode_method != FORWARD_FILTER:
        return None
    known = state.emission_rows
    if known is None or not known.belongs_to(spec, state.bars) or len(state.bars) == 0:
        return emission_rows(spec, window)
    if len(window) > spec.hmm_features.first_full_row:
        row = scaled_emission_row(log_emission_row(spec.hmm, last_hmm_row(window, spec.hmm_features)))
    else:
        row = np.full(spec.n_states, np.nan)
    return EmissionRows(spec, window, np.concatenate([known.b, row[None, :]])[-len(window):])


def _view(spec: TwinSpec, window: np.ndarray, rows: EmissionRows | None) -> MarketView:
    features = last_market_row(window, spec.rl_features)
    if rows is None:
        log_b = log_emission_row(spec.hmm, last_hmm_row(window, spec.hmm_features))
        state = single_observation_states(spec.hmm, np.array([log_b]))[0]
    else:
        n, first = len(window), spec.hmm_features.first_full_row
        state = filter_states(spec.hmm, rows.b, np.array([n - 1]), n - first)[0]
    return MarketView(features, int(state))


def market_view(spec: TwinSpec, window: np.ndarray) -> MarketView:
    """Market features and HMM state of the window's last bar (the window is ``spec.window`` bars)."""
    rows = emission_rows(spec, window) if spec.decode_method == FORWARD_FILTER else None
    return _view(spec, window, rows)


def market_series(spec: TwinSpec, bars: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``market_view`` for every bar t >= window-1 at once (the trainer's path): features (N', 6), states (N',).

    Row j belongs to bar ``window - 1 + j``. Equal, float for float, to calling ``market_view`` on each window.
    """
    ends = np.arange(spec.window - 1, len(bars))
    features = market_features(bars, ends, spec.window, spec.rl_features)
    rows = np.arange(len(bars))
    hmm_rows = hmm_features(bars, rows, np.zeros_like(rows), spec.hmm_features)
    states = decode_states(spec.hmm, spec.decode_method, hmm_rows, ends,
                           spec.window - spec.hmm_features.first_full_row)
    return features, states


def observe(spec: TwinSpec, view: MarketView, position: Position) -> np.ndarray:
    lot = spec.costs.lot_sizes[position.intensity]
    return observation(view.features, view.hmm_state, spec.n_states,
                       position_features(position.direction, lot, position.floating_pnl))


def apply_action(spec: TwinSpec, position: Position, action: Action, time: int, close: float) -> PositionUpdate:
    return apply_target(position, target_of(action), close, time, spec.costs)


@dataclass(frozen=True, eq=False)
class Observed:
    """A step up to its policy call: the bar appended, the market seen, the observation built; ``decide`` takes the
    policy's action and ends the step (``step`` is ``observe_bar`` then ``decide``: a caller may ask the policies
    of many twins at once in between)."""

    bar: Bar
    window: np.ndarray
    rows: EmissionRows | None
    view: MarketView
    observation: np.ndarray  # float32, what the policy reads


def observe_bar(spec: TwinSpec, state: TwinState, bar: Bar) -> Observed | TwinState:
    """The first half of ``step``: the state after ``bar`` while the window is not full yet (no decision), else
    what the policy must see (``Observed``, for ``decide``)."""
    if state.last_bar_time is not None and bar.time <= state.last_bar_time:
        raise StaleBar(f"bar at {bar.time} is not after the last bar {state.last_bar_time}")
    window = np.concatenate([state.bars, bar_row(bar)[None, :]])[-spec.window:]
    rows = next_emission_rows(spec, state, window)
    if len(window) < spec.window:
        return TwinState(window, state.position, state.realized_pnl, bar.time, state.decisions,
                         state.model_id, state.last_decision, rows)
    view = _view(spec, window, rows)
    return Observed(bar, window, rows, view, observe(spec, view, state.position))


def decide(spec: TwinSpec, state: TwinState, seen: Observed, action_index: int) -> tuple[TwinState, Decision]:
    """The second half of ``step``: the policy's ``action_index`` for ``seen`` (``observe_bar(spec, state, bar)``)
    applied at the bar's close."""
    bar, obs = seen.bar, seen.observation
    action = action_from_index(action_index)
    update = apply_action(spec, state.position, action, bar.time, bar.close)
    realized = state.realized_pnl + update.balance_change
    target = target_of(action)
    equity = spec.costs.initial_balance + realized + update.position.floating_pnl
    decision = Decision(bar.time, bar.close, action, target.direction, target.intensity, seen.view.hmm_state,
                        update.position.floating_pnl, realized, equity, update.closed, tuple(obs.tolist()))
    return TwinState(seen.window, update.position, realized, bar.time, state.decisions + 1, state.model_id,
                     decision, seen.rows), decision


def step(spec: TwinSpec, state: TwinState, bar: Bar, policy: Policy) -> tuple[TwinState, Decision | None]:
    """Feed one closed bar. Returns the new state and, once the window is full, the decision at this bar."""
    seen = observe_bar(spec, state, bar)
    if isinstance(seen, TwinState):
        return seen, None
    return decide(spec, state, seen, policy(seen.observation))


def is_new_bar(state: TwinState, bar: Bar) -> bool:
    return state.last_bar_time is None or bar.time > state.last_bar_time


def warmup(spec: TwinSpec, state: TwinState, bars: np.ndarray | Iterable[Bar], policy: Policy) -> TwinState:
    """The same steps as live, without emitting: after a (re)start, before the first live bar."""
    return run(spec, state, bars, policy)[0]


def run(spec: TwinSpec, state: TwinState, bars: np.ndarray | Iterable[Bar],
        policy: Policy) -> tuple[TwinState, list[Decision]]:
    """Step through ``bars`` (oldest first), skipping those not newer than the state's last bar.

    Warmup after a (re)start is ``run`` with the decisions ignored.
    """
    seq = (bar_at(bars, i) for i in range(len(bars))) if isinstance(bars, np.ndarray) else bars
    decisions: list[Decision] = []
    for bar in seq:
        if not is_new_bar(state, bar):
            continue
        state, decision = step(spec, state, bar, policy)
        if decision is not None:
            decisions.append(decision)
    return state, decisions
