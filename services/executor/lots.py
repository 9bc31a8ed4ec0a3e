"""Intensity -> lots, checked against the symbol's volume limits (in lots) and its off-step rule.

Units: lots everywhere (0.01 = one micro lot on forex). The symbol's limits are lots too (`min_lots`,
`step_lots`, `max_lots` of the connector's `symbol_info`); `contract_size` is the units of the base asset in one
lot (100 000 on forex), needed only where notional matters (margin, money <-> price distance).

Lots that are not a whole number of steps are refused (`OFF_STEP`) unless the symbol's config says
`off_step: round_down`; either way `step_lots` tells what happened (requested, sent, rule), and the ack says it.
The step check is exact up to float noise (0.03 lots with a 0.01 step is 3 steps, not 2.9999999999999996).
Nothing else rounds: lots below the minimum or above the maximum raise `LotError` with a reason code the
executor puts in its SKIP ack.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

from services.executor.symbols_config import SymbolConfig

# relative tolerance of the step arithmetic: float noise only (0.03 / 0.01 = 2.9999999999999996)
STEP_TOLERANCE = 1e-9
_LOT_DECIMALS = 10  # lots sent are rounded here, so 3 steps of 0.01 are 0.03 and not 0.030000000000000002


class LotError(ValueError):
    """The lots cannot be sent as they are. `code` is the ack reason."""

    def __init__(self, code: str, message: str, requested: float | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.requested = requested


class OffStepRule(StrEnum):
    """What to do with configured lots that are not a whole number of the symbol's steps."""

    REFUSE = "refuse"  # skip the opening (OFF_STEP)
    ROUND_DOWN = "round_down"  # send the largest whole number of steps below (never more risk than configured)


@dataclass(frozen=True)
class VolumeLimits:
    """A symbol's volume limits in lots, and the units of its base asset in one lot."""

    min_lots: float
    step_lots: float
    max_lots: float
    contract_size: float

    def problems(self) -> list[str]:
        out = []
        for name in ("min_lots", "step_lots", "max_lots", "contract_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
                    or value <= 0:
                out.append(f"{name} must be a positive number, got {value!r}")
        if not out and self.min_lots > self.max_lots:
            out.append(f"min_lots {self.min_lots} > max_lots {self.max_lots}")
        return out


@dataclass(frozen=True)
class SizedLots:
    """Lots to send, and how they came from the configured ones."""

    requested: float  # configured for the intensity
    lots: float  # sent: `requested`, or rounded down to the step
    rule: OffStepRule  # the symbol's off-step rule
    off_step: bool  # the requested lots were not a whole number of steps

    @property
    def rounded(self) -> bool:
        return self.off_step and self.lots != self.requested


def lots_for_intensity(config: SymbolConfig, intensity: int) -> float:
    """Real lots for a signal intensity (0 -> 0.0, meaning nothing to open)."""
    return config.lots(intensity)


def _steps(lots: float, step: float) -> tuple[int, bool]:
    """(whole steps in `lots` rounded down, whether `lots` is a whole number of steps), up to float noise."""
    exact = lots / step
    nearest = round(exact)
    if abs(exact - nearest) <= STEP_TOLERANCE * max(1.0, exact):
        return nearest, True
    return math.floor(exact), False


def _of_steps(steps: int, step: float) -> float:
    return round(steps * step, _LOT_DECIMALS)


def size_lots(lots: float, limits: VolumeLimits | None, rule: OffStepRule = OffStepRule.REFUSE) -> SizedLots:
    """The lots to send for `lots` configured, or `LotError`.

    Codes: NO_SYMBOL_DATA (limits missing or not positive), ZERO_LOT, OFF_STEP (not a whole number of steps and the
    rule refuses), BELOW_MIN (also when rounding down leaves less than the minimum), ABOVE_MAX.
    """
    if limits is None:
        raise LotError("NO_SYMBOL_DATA", "no volume data for the symbol", lots)
    problems = limits.problems()
    if problems:
        raise LotError("NO_SYMBOL_DATA", "; ".join(problems), lots)
    if not lots > 0:  # also catches NaN
        raise LotError("ZERO_LOT", f"lots must be positive, got {lots}", lots)
    steps, whole = _steps(lots, limits.step_lots)
    if not whole and rule == OffStepRule.REFUSE:
        raise LotError("OFF_STEP", f"{lots} lots is not a multiple of the step {limits.step_lots} lots "
                       f"(off_step rule: {rule.value})", lots)
    sent = _of_steps(steps, limits.step_lots)
    tolerance = STEP_TOLERANCE * limits.step_lots
    rounded = "" if whole else f" ({lots} lots rounded down to the step {limits.step_lots})"
    if sent < limits.min_lots - tolerance:
        raise LotError("BELOW_MIN", f"{sent} lots below the minimum {limits.min_lots} lots{rounded}", lots)
    if sent > limits.max_lots + tolerance:
        raise LotError("ABOVE_MAX", f"{sent} lots above the maximum {limits.max_lots} lots{rounded}", lots)
    return SizedLots(requested=lots, lots=sent, rule=rule, off_step=not whole)


def lots_to_send(config: SymbolConfig, intensity: int, limits: VolumeLimits | None) -> SizedLots:
    """The lots of an opening: config lots for the intensity, checked against the symbol under its off-step rule."""
    return size_lots(lots_for_intensity(config, intensity), limits, OffStepRule(config.off_step))


def same_lots(a: float, b: float) -> bool:
    """Two lot amounts are equal up to float noise."""
    return abs(a - b) <= STEP_TOLERANCE * max(1.0, abs(a), abs(b))


def intensities_of_lots(config: SymbolConfig, lots: float, limits: VolumeLimits | None) -> tuple[int, ...]:
    """The intensities whose opening would have these lots (the configured lots, or what the off-step rule makes of
    them when the symbol's limits are known). Several when two intensities send the same lots; none: unknown."""
    return tuple(intensity for intensity, sent in _lots_sent(config, limits) if same_lots(sent, lots))


def _lots_sent(config: SymbolConfig, limits: VolumeLimits | None) -> tuple[tuple[int, float], ...]:
    """(intensity, lots its opening sends) of every intensity that can open: a pure function of the symbol's config
    and limits (both frozen), kept per pair of objects instead of checked again for each signal (the executor holds
    one of each per symbol from bar to bar: found by identity, without hashing and comparing a config's fields)."""
    key = (id(config), id(limits))
    kept = _SENT.get(key)
    if kept is not None and kept[0] is config and kept[1] is limits:
        return kept[2]
    if len(_SENT) >= 512:
        _SENT.clear()
    found = _lots_sent_of(config, limits)
    _SENT[key] = (config, limits, found)  # the objects kept too: their ids stay theirs while in here
    return found


_SENT: dict[tuple[int, int], tuple[SymbolConfig, VolumeLimits | None, tuple[tuple[int, float], ...]]] = {}


def _lots_sent_of(config: SymbolConfig, limits: VolumeLimits | None) -> tuple[tuple[int, float], ...]:
    found = []
    for intensity in (1, 2, 3):
        configured = config.lots(intensity)
        if not configured > 0:
            continue
        sent = configured
        if limits is not None:
            try:
                sent = lots_to_send(config, intensity, limits).lots
            except LotError:
                continue  # never sendable: no position has these lots by our opening
        found.append((intensity, sent))
    return tuple(found)


def check_config_lots(config: SymbolConfig, limits: VolumeLimits | None) -> dict[int, str]:
    """Boot-time check of a symbol's configured lots: {intensity: problem} (empty = all sendable as configured).
    Lots the off-step rule rounds down are reported too: what is sent differs from the config."""
    problems: dict[int, str] = {}
    for intensity in (1, 2, 3):
        if config.lots(intensity) == 0:
            continue  # an intensity with 0 lots is skipped at runtime (ZERO_LOT), not an error
        try:
            sized = lots_to_send(config, intensity, limits)
        except LotError as exc:
            problems[intensity] = str(exc)
            continue
        if sized.rounded:
            problems[intensity] = f"ROUNDED_DOWN: {sized.requested} lots are sent as {sized.lots} lots " \
                                  f"(off_step rule: {sized.rule.value})"
    return problems
