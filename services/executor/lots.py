"""Intensity -> lots -> protocol volume, validated against the symbol's volume limits.

Units: lots are what the config holds (0.01 = one micro lot on forex). The symbol's limits come from cTrader
as protocol volumes: integers in cents of a unit (`lotSize` 10 000 000 = 100 000 units = 1 forex lot).
The order volume sent to the connector is a protocol volume too. `VolumeLimits` holds the symbol's fields
as the connector reports them (same names as `ProtoOASymbol`: lotSize, minVolume, stepVolume, maxVolume).

Nothing here rounds silently: lots that are not an exact multiple of the symbol's step, below its minimum or
above its maximum raise `LotError` with a reason code the executor puts in its SKIP ack.
"""

from __future__ import annotations

from dataclasses import dataclass

from services.executor.symbols_config import SymbolConfig

# relative tolerance when checking that lots * lotSize is a whole volume (float noise only: 0.03 * 1e7)
_WHOLE_TOLERANCE = 1e-6


class LotError(ValueError):
    """The lots cannot be sent as they are. `code` is the ack reason."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


@dataclass(frozen=True)
class VolumeLimits:
    """A symbol's volume data in protocol units (cents of a unit)."""

    lot_size: int
    min_volume: int
    step_volume: int
    max_volume: int

    def problems(self) -> list[str]:
        out = []
        for name in ("lot_size", "min_volume", "step_volume", "max_volume"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                out.append(f"{name} must be a positive integer, got {value!r}")
        if not out and self.min_volume > self.max_volume:
            out.append(f"min_volume {self.min_volume} > max_volume {self.max_volume}")
        return out


def lots_for_intensity(config: SymbolConfig, intensity: int) -> float:
    """Real lots for a signal intensity (0 -> 0.0, meaning nothing to open)."""
    return config.lots(intensity)


def lots_to_volume(lots: float, limits: VolumeLimits | None) -> int:
    """Lots -> protocol volume, exactly, or `LotError`.

    Codes: NO_SYMBOL_DATA (limits missing or not positive), ZERO_LOT, NOT_WHOLE_VOLUME (finer than a cent of a
    unit), OFF_STEP (not a multiple of stepVolume), BELOW_MIN, ABOVE_MAX.
    """
    if limits is None:
        raise LotError("NO_SYMBOL_DATA", "no volume data for the symbol")
    problems = limits.problems()
    if problems:
        raise LotError("NO_SYMBOL_DATA", "; ".join(problems))
    if not lots > 0:  # also catches NaN
        raise LotError("ZERO_LOT", f"lots must be positive, got {lots}")
    exact = lots * limits.lot_size
    volume = round(exact)
    if abs(exact - volume) > _WHOLE_TOLERANCE * max(1.0, exact):
        raise LotError("NOT_WHOLE_VOLUME", f"{lots} lots x lotSize {limits.lot_size} = {exact} is not whole")
    if volume % limits.step_volume:
        step_lots = volume_to_lots(limits.step_volume, limits.lot_size)
        raise LotError("OFF_STEP", f"{lots} lots = volume {volume} is not a multiple of step "
                       f"{limits.step_volume} ({step_lots} lots)")
    if volume < limits.min_volume:
        raise LotError("BELOW_MIN", f"{lots} lots below the minimum "
                       f"{volume_to_lots(limits.min_volume, limits.lot_size)} lots")
    if volume > limits.max_volume:
        raise LotError("ABOVE_MAX", f"{lots} lots above the maximum "
                       f"{volume_to_lots(limits.max_volume, limits.lot_size)} lots")
    return volume


def volume_for_intensity(config: SymbolConfig, intensity: int, limits: VolumeLimits | None) -> int:
    """The order volume for a signal: config lots for the intensity, validated against the symbol."""
    return lots_to_volume(lots_for_intensity(config, intensity), limits)


def volume_to_lots(volume: int, lot_size: int) -> float:
    if lot_size <= 0:
        raise LotError("NO_SYMBOL_DATA", f"lot_size must be positive, got {lot_size}")
    return volume / lot_size


def intensity_of_volume(config: SymbolConfig, volume: int, lot_size: int) -> int:
    """The intensity whose configured lots equal a real position's volume; 0 when none does (unknown)."""
    for intensity in (1, 2, 3):
        lots = config.lots(intensity)
        if lots > 0 and round(lots * lot_size) == volume:
            return intensity
    return 0


def check_config_lots(config: SymbolConfig, limits: VolumeLimits | None) -> dict[int, str]:
    """Boot-time check of a symbol's configured lots: {intensity: problem} (empty = all sendable)."""
    problems: dict[int, str] = {}
    for intensity in (1, 2, 3):
        lots = config.lots(intensity)
        if lots == 0:
            continue  # an intensity with 0 lots is skipped at runtime (ZERO_LOT), not an error
        try:
            lots_to_volume(lots, limits)
        except LotError as exc:
            problems[intensity] = str(exc)
    return problems
