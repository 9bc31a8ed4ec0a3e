import math

import pytest

from services.executor.lots import (
    LotError,
    VolumeLimits,
    check_config_lots,
    intensity_of_volume,
    lots_to_volume,
    volume_for_intensity,
    volume_to_lots,
)
from services.executor.symbols_config import SymbolConfig

# forex: lotSize 10 000 000 cents = 100 000 units; min 0.01 lot, step 0.01 lot, max 100 lots
FX = VolumeLimits(lot_size=10_000_000, min_volume=100_000, step_volume=100_000, max_volume=1_000_000_000)
# an index: 1 lot = 1 unit (100 cents); min 0.1 lot, step 0.1 lot, max 50 lots
INDEX = VolumeLimits(lot_size=100, min_volume=10, step_volume=10, max_volume=5_000)
# gold: 1 lot = 100 oz; min 0.01 lot (1 oz = 100 cents), step 0.01, max 50 lots
GOLD = VolumeLimits(lot_size=10_000, min_volume=100, step_volume=100, max_volume=500_000)

CFG = SymbolConfig(enabled=True, lot_weak=0.01, lot_moderate=0.03, lot_strong=0.05)


@pytest.mark.parametrize("intensity,volume", [(1, 100_000), (2, 300_000), (3, 500_000)])
def test_volume_for_intensity_forex(intensity, volume):
    assert volume_for_intensity(CFG, intensity, FX) == volume


@pytest.mark.parametrize("lots,limits,volume", [
    (0.01, FX, 100_000),
    (0.07, FX, 700_000),
    (1.0, FX, 10_000_000),
    (100.0, FX, 1_000_000_000),
    (0.1, INDEX, 10),
    (0.3, INDEX, 30),
    (50.0, INDEX, 5_000),
    (0.01, GOLD, 100),
    (0.05, GOLD, 500),
])
def test_lots_to_volume(lots, limits, volume):
    assert lots_to_volume(lots, limits) == volume


@pytest.mark.parametrize("lots,limits,code", [
    (0.0, FX, "ZERO_LOT"),
    (-0.01, FX, "ZERO_LOT"),
    (math.nan, FX, "ZERO_LOT"),
    (0.015, FX, "OFF_STEP"),       # would be rounded to 0.02 (more risk) by a silent rounding
    (0.005, FX, "OFF_STEP"),
    (0.15, INDEX, "OFF_STEP"),
    (0.001, INDEX, "NOT_WHOLE_VOLUME"),  # 0.1 cent of a unit
    (0.05, INDEX, "OFF_STEP"),
    (100.01, FX, "ABOVE_MAX"),
    (60.0, INDEX, "ABOVE_MAX"),
    (0.01, None, "NO_SYMBOL_DATA"),
    (0.01, VolumeLimits(0, 100_000, 100_000, 1_000_000), "NO_SYMBOL_DATA"),
    (0.01, VolumeLimits(10_000_000, 100_000, 0, 1_000_000), "NO_SYMBOL_DATA"),
    (0.01, VolumeLimits(10_000_000, 2_000_000, 100_000, 1_000_000), "NO_SYMBOL_DATA"),
])
def test_lots_rejected(lots, limits, code):
    with pytest.raises(LotError) as info:
        lots_to_volume(lots, limits)
    assert info.value.code == code


def test_below_min_with_finer_step():
    limits = VolumeLimits(lot_size=10_000_000, min_volume=1_000_000, step_volume=100_000, max_volume=10**9)
    with pytest.raises(LotError) as info:
        lots_to_volume(0.05, limits)
    assert info.value.code == "BELOW_MIN"
    assert "0.1 lots" in str(info.value)


def test_wait_intensity_is_zero_lot():
    with pytest.raises(LotError) as info:
        volume_for_intensity(CFG, 0, FX)
    assert info.value.code == "ZERO_LOT"


@pytest.mark.parametrize("volume,intensity", [(100_000, 1), (300_000, 2), (500_000, 3), (200_000, 0)])
def test_intensity_of_volume(volume, intensity):
    assert intensity_of_volume(CFG, volume, FX.lot_size) == intensity


def test_volume_to_lots():
    assert volume_to_lots(300_000, FX.lot_size) == pytest.approx(0.03)
    with pytest.raises(LotError):
        volume_to_lots(1, 0)


def test_check_config_lots_reports_each_bad_intensity():
    cfg = SymbolConfig(enabled=True, lot_weak=0.1, lot_moderate=0.25, lot_strong=0.0)
    problems = check_config_lots(cfg, INDEX)
    assert list(problems) == [2]
    assert problems[2].startswith("OFF_STEP")
    assert check_config_lots(CFG, FX) == {}
