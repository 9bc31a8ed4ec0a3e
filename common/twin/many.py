"""The first half of the step (``twin.observe_bar``) for many twins at once: the live step of a bar close.

    seen = observe_bars([(spec, state, bar), ...])   # == [observe_bar(spec, state, bar), ...], bit for bit
    steps = step_run(spec, state, bars, policy)      # == the states and decisions of ``step`` bar after bar
    state, decisions = run_bars(spec, state, bars, policy)  # == twin.run(spec, state, bars, policy)

The preditor steps the bars of one close together; one by one, the new bar's features and HMM emission row cost
some 40 us of small Python-float operations per twin (``last_bar``, ``hmm.log_emission_row``). Here the twins whose
window is full and whose emission rows are known (every live twin after its first bar) are stacked: the last
``span`` bars of each window as one (m, span, 6) array, and every feature is computed for the m twins with the
same IEEE-754 double operations, in the same order, as ``last_bar`` and ``features`` do for one (sums oldest first
by ``np.add.accumulate``, which adds left to right; max and min, exact, with NaN winning as ``np.maximum`` does;
tanh and exp by numpy as elsewhere), so each twin's values are the same bits
(tests/common/twin/test_twin_many.py holds them to ``last_bar``, ``log_emission_row`` and ``observe_bar``). The
forward filter and the trend EMA stay per twin (C loops; each model has its own HMM). Any other twin (a window not
full yet, rows to rebuild, another decode method, a twin alone in its kind) takes ``observe_bar`` itself.

``step_run`` is the same for the successive bars of one twin (a run of bars, a replay burst): their market part
(features, emission rows, HMM states) does not depend on the twin's decisions, so it is computed for all of them
at once as for so many twins (each bar's window its own row of the stack; the forward filters and the EMAs in one
call of their C loops, each end computed alone as for one window), then the observations, the policy and the
decisions go bar after bar, as ``step`` does.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from common.twin import cloops
from common.twin.bars import CLOSE, HIGH, LOW, TIME, VOLUME, Bar, bar_at, bar_row
from common.twin.features import _SESSION_BY_HOUR, HmmFeatureParams, RlFeatureParams
from common.twin.hmm import FORWARD_FILTER
from common.twin.last_bar import hmm_span, market_span
from common.twin.twin import (
    Decision,
    EmissionRows,
    MarketView,
    Observed,
    Policy,
    StaleBar,
    TwinSpec,
    TwinState,
    decide,
    observe,
    observe_bar,
    step,
)


def _sums(x: np.ndarray) -> np.ndarray:
    """Each row's sum, its terms added oldest (leftmost) first: ``((x0 + x1) + x2) + ...``."""
    return np.add.accumulate(x, axis=1)[:, -1]


def _range_positions(high: np.ndarray, low: np.ndarray, close: np.ndarray, period: int) -> np.ndarray:
    """``last_bar._Tail.range_position`` of each row (windows full: the period inside each)."""
    hh = np.maximum.reduce(high[:, -period:], axis=1)  # exact; a NaN wins, as in the one-by-one loop
    ll = np.minimum.reduce(low[:, -period:], axis=1)
    span = hh - ll
    safe = np.where(span > 0, span, 1.0)
    value = (close - ll) / safe * 2.0 - 1.0
    return np.where(span > 0, value, 0.0)


def _no_nan(x: np.ndarray) -> np.ndarray:
    return np.where(x != x, 0.0, x)


def hmm_rows(tails: np.ndarray, p: HmmFeatureParams) -> np.ndarray:
    """(m, 3): ``last_bar.last_hmm_row`` of each full window whose last bars are ``tails`` (m, span, 6)."""
    close, high, low = tails[:, :, CLOSE], tails[:, :, HIGH], tails[:, :, LOW]
    with np.errstate(divide="ignore", invalid="ignore"):
        r = close[:, 1:] / close[:, :-1] - 1.0  # r[:, j] is the return of tail bar j + 1
        momentum = np.minimum(np.maximum(100.0 * _sums(r[:, -p.momentum_period:]), -5.0), 5.0)
        last = r[:, -p.consistency_period:]
        up = (last > 0).sum(axis=1).astype(np.float64)  # counts of 1.0: exact in any order
        down = (last < 0).sum(axis=1).astype(np.float64)
        diff = up - down
        sign = np.where(diff > 0, 1.0, np.where(diff < 0, -1.0, 0.0))
        consistency = (np.maximum(up, down) / p.consistency_period * 2.0 - 1.0) * sign
        position = _range_positions(high, low, close[:, -1], p.range_period)
    return np.stack([_no_nan(momentum), _no_nan(consistency), _no_nan(position)], axis=1)


def _window_emas(windows: Sequence[np.ndarray], p: RlFeatureParams) -> np.ndarray:
    """``features.trend_ema`` of each window (its own C loop)."""
    ema = np.empty(len(windows))
    alpha = 2.0 / (p.ema_period + 1)
    start = np.zeros(1, dtype=np.int64)
    for k, w in enumerate(windows):
        cloops.ema(np.ascontiguousarray(w[:, CLOSE]), start, len(w), alpha, ema[k:k + 1])
    return ema


def market_rows(tails: np.ndarray, windows: Sequence[np.ndarray], p: RlFeatureParams,
                ema: np.ndarray | None = None) -> np.ndarray:
    """(m, 6): ``last_bar.last_market_row`` of each full window (``windows``; ``tails`` their last bars; ``ema``:
    their ``trend_ema`` when known)."""
    close, high, low, volume = tails[:, :, CLOSE], tails[:, :, HIGH], tails[:, :, LOW], tails[:, :, VOLUME]
    last = close[:, -1]
    if ema is None:
        ema = _window_emas(windows, p)
    with np.errstate(divide="ignore", invalid="ignore"):
        prev = close[:, -1 - p.roc_period]
        roc = (last - prev) / prev * 20.0
        n = p.atr_period
        h, lo, before = high[:, -n:], low[:, -n:], close[:, -n - 1:-1]
        tr = np.maximum(h - lo, np.maximum(np.abs(h - before), np.abs(lo - before)))
        atr = _sums(tr) / n / last * 50.0
        trend = (last - ema) / ema * 20.0
        ma = _sums(volume[:, -p.volume_ma_period:]) / p.volume_ma_period
        ma = np.where(ma == 0, 1.0, ma)
        vol_rel = (volume[:, -1] / ma - 1.0) * 2.0
        roc, atr, trend, vol_rel = np.tanh(np.stack([roc, atr, trend, vol_rel]))
        position = _range_positions(high, low, last, p.range_period)
    session = _SESSION_BY_HOUR[(tails[:, -1, TIME] // 3600 % 24).astype(np.int64)]
    return np.stack([_no_nan(x) for x in (roc, atr, trend, position, vol_rel, session)], axis=1)


def scaled_emission_rows(specs: Sequence[TwinSpec], x: np.ndarray) -> np.ndarray:
    """(m, K): ``scaled_emission_row(log_emission_row(spec.hmm, x[i]))`` of each twin (its own HMM)."""
    gs = [s.hmm.gaussians for s in specs]
    means = np.stack([s.hmm.means for s in specs])  # (m, K, D)
    chol = np.stack([g.chol for g in gs])  # (m, K, D, D)
    offset = np.array([g.offset for g in gs])  # (m, K)
    z: list[np.ndarray] = []
    maha = np.zeros(offset.shape)
    for i in range(x.shape[1]):
        zi = x[:, i, None] - means[:, :, i]
        for j in range(i):
            zi = zi - chol[:, :, i, j] * z[j]
        zi = zi / chol[:, :, i, i]
        z.append(zi)
        maha = maha + zi * zi
    log_b = -0.5 * (maha + offset)
    peak = np.maximum.reduce(log_b, axis=1)
    return np.exp(log_b - peak[:, None])


_KINDS: dict[int, tuple[TwinSpec, tuple | None]] = {}  # by id(spec); the entry keeps its spec (and so its id) alive


def _spec_kind(spec: TwinSpec) -> tuple | None:
    """What the twins computed together share (None: a spec never computed with others)."""
    entry = _KINDS.get(id(spec))
    if entry is not None and entry[0] is spec:
        return entry[1]
    span = max(hmm_span(spec.hmm_features), market_span(spec.rl_features)) + 1
    kind = None
    if spec.decode_method == FORWARD_FILTER and spec.window > max(span, spec.hmm_features.first_full_row):
        kind = (spec.window, spec.hmm_features, spec.rl_features, spec.n_states, span)
    if len(_KINDS) > 4096:
        _KINDS.clear()
    _KINDS[id(spec)] = (spec, kind)
    return kind


def _kind(spec: TwinSpec, state: TwinState) -> tuple | None:
    """The twins of one kind are computed together; None: this one steps alone (``observe_bar``): another decode
    method, a window not full after this bar, emission rows to rebuild (the first bar after a restart)."""
    rows = state.emission_rows
    if rows is None or not rows.belongs_to(spec, state.bars) or len(state.bars) < spec.window - 1:
        return None
    return _spec_kind(spec)


def observe_bars(items: Sequence[tuple[TwinSpec, TwinState, Bar]]) -> list[Observed | TwinState]:
    """``[observe_bar(spec, state, bar) for spec, state, bar in items]``, the same values bit for bit."""
    out: list[Observed | TwinState | None] = [None] * len(items)
    kinds: dict[tuple, list[int]] = {}
    for n, (spec, state, bar) in enumerate(items):
        if state.last_bar_time is not None and bar.time <= state.last_bar_time:
            raise StaleBar(f"bar at {bar.time} is not after the last bar {state.last_bar_time}")
        kind = _kind(spec, state)
        if kind is None:
            out[n] = observe_bar(spec, state, bar)
        else:
            kinds.setdefault(kind, []).append(n)
    for (window, hmm_p, rl_p, _, span), members in kinds.items():
        if len(members) == 1:
            n = members[0]
            out[n] = observe_bar(*items[n])
            continue
        _observe_kind([items[n] for n in members], members, window, hmm_p, rl_p, span, out)
    return out  # type: ignore[return-value]


def _observe_kind(group: list[tuple[TwinSpec, TwinState, Bar]], members: list[int], window: int,
                  hmm_p: HmmFeatureParams, rl_p: RlFeatureParams, span: int, out: list) -> None:
    windows = [np.concatenate([s.bars, bar_row(b)[None, :]])[-window:] for _, s, b in group]
    tails = np.stack([w[-span:] for w in windows])
    specs = [spec for spec, _, _ in group]
    rows_b = scaled_emission_rows(specs, hmm_rows(tails, hmm_p))
    features = market_rows(tails, windows, rl_p)
    first = hmm_p.first_full_row
    ends = np.array([window - 1], dtype=np.int64)
    for k, ((spec, state, bar), w) in enumerate(zip(group, windows, strict=True)):
        known = state.emission_rows
        assert known is not None
        rows = EmissionRows(spec, w, np.concatenate([known.b, rows_b[k:k + 1]])[-window:])
        startprob, transmat = spec.hmm.contiguous
        filtered = np.empty((1, spec.n_states))
        cloops.forward_filter(startprob, transmat, rows.b, ends, window - first, filtered)
        view = MarketView(features[k], int(np.argmax(filtered[0])))
        out[members[k]] = Observed(bar, w, rows, view, observe(spec, view, state.position))


def step_run(spec: TwinSpec, state: TwinState, bars: Sequence[Bar],
             policy: Policy) -> list[tuple[TwinState, Decision | None]]:
    """``step`` over ``bars`` one after the other (oldest first): the state and the decision (None while the window
    fills) after each, the same values bit for bit. The bars step one by one until the twin's window is full and
    its emission rows known (``_kind``); the rest have their market part computed together (``_run_views``)."""
    out: list[tuple[TwinState, Decision | None]] = []
    i = 0
    while i < len(bars) and (len(bars) - i < 2 or _kind(spec, state) is None or not _in_order(state, bars[i:])):
        state, decision = step(spec, state, bars[i], policy)
        out.append((state, decision))
        i += 1
    if i == len(bars):
        return out
    for window, rows, view in _run_views(spec, state, bars[i:]):
        bar = bars[i]
        seen = Observed(bar, window, rows, view, observe(spec, view, state.position))
        state, decision = decide(spec, state, seen, policy(seen.observation))
        out.append((state, decision))
        i += 1
    return out


def run_bars(spec: TwinSpec, state: TwinState, bars: np.ndarray | Sequence[Bar],
             policy: Policy) -> tuple[TwinState, list[Decision]]:
    """``twin.run`` (the bars not newer than the state's last skipped) by ``step_run``: the same state and
    decisions, bit for bit."""
    seq = [bar_at(bars, i) for i in range(len(bars))] if isinstance(bars, np.ndarray) else list(bars)
    last, fresh = state.last_bar_time, []
    for bar in seq:
        if last is None or bar.time > last:
            fresh.append(bar)
            last = bar.time
    steps = step_run(spec, state, fresh, policy)
    return (steps[-1][0] if steps else state), [d for _, d in steps if d is not None]


def _in_order(state: TwinState, bars: Sequence[Bar]) -> bool:
    """Each bar after the one before, the first after the state's last (else ``step`` says which is stale)."""
    last = state.last_bar_time
    for bar in bars:
        if last is not None and bar.time <= last:
            return False
        last = bar.time
    return True


def _run_views(spec: TwinSpec, state: TwinState,
               bars: Sequence[Bar]) -> list[tuple[np.ndarray, EmissionRows, MarketView]]:
    """The window, emission rows and market view ``observe_bar`` gives at each of ``bars`` (a twin of a ``_kind``:
    its window full after each bar, its rows known), from the bars alone: the twin's decisions do not enter them."""
    window, hmm_p, rl_p, _, span = _spec_kind(spec)  # type: ignore[misc]
    known = state.emission_rows
    assert known is not None
    n0, k = len(state.bars), len(bars)
    every = np.concatenate([state.bars, np.array([bar_row(b) for b in bars])])
    ends = np.arange(n0, n0 + k, dtype=np.int64)  # bar j's row in ``every``
    windows = [every[e + 1 - window:e + 1] for e in ends.tolist()]
    tails = np.stack([every[e + 1 - span:e + 1] for e in ends.tolist()])
    b = np.concatenate([known.b, scaled_emission_rows([spec] * k, hmm_rows(tails, hmm_p))])  # aligned with every
    ema = np.empty(k)
    cloops.ema(np.ascontiguousarray(every[:, CLOSE]), ends + 1 - window, window, 2.0 / (rl_p.ema_period + 1), ema)
    features = market_rows(tails, windows, rl_p, ema)
    startprob, transmat = spec.hmm.contiguous
    filtered = np.empty((k, spec.n_states))
    cloops.forward_filter(startprob, transmat, b, ends, window - hmm_p.first_full_row, filtered)
    states = np.argmax(filtered, axis=1).tolist()
    return [(w, EmissionRows(spec, w, b[e + 1 - window:e + 1]), MarketView(features[j], states[j]))
            for j, (w, e) in enumerate(zip(windows, ends.tolist(), strict=True))]
