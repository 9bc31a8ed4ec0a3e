import math

import pytest

from services.executor.lots import (
    LotError,
    OffStepRule,
    VolumeLimits,
    check_config_lots,
    intensities_of_lots,
    lots_to_send,
    same_lots,
    size_lots,
)
from services.executor.symbols_config import SymbolConfig

# forex: 1 lot = 100 000 units; min 0.01 lot, step 0.01 lot, max 100 lots
FX = VolumeLimits(min_lots=0.01, step_lots=0.01, max_lots=100.0, contract_size=100_000)
# an index: 1 lot = 1 unit; min 0.1 lot, step 0.1 lot, max 50 lots
INDEX = VolumeLimits(min_lots=0.1, step_lots=0.1, max_lots=50.0, contract_size=1)
# gold: 1 lot = 100 oz; min 0.01 lot, step 0.01, max 50 lots
GOLD = VolumeLimits(min_lots=0.01, step_lots=0.01, max_lots=50.0, contract_size=100)

CFG = SymbolConfig(enabled=True, lot_weak=0.01, lot_moderate=0.03, lot_strong=0.05)
ROUND_DOWN = CFG.model_copy(update={"off_step": "round_down"})


@pytest.mark.parametrize("intensity,lots", [(1, 0.01), (2, 0.03), (3, 0.05)])
def test_lots_for_intensity_forex(intensity, lots):
    sized = lots_to_send(CFG, intensity, FX)
    assert (sized.lots, sized.requested, sized.off_step, sized.rounded) == (lots, lots, False, False)


@pytest.mark.parametrize("lots,limits", [
    (0.01, FX), (0.03, FX), (0.07, FX), (1.0, FX), (100.0, FX), (0.29, FX), (0.57, FX),  # float noise: 0.57/0.01
    (0.1, INDEX), (0.3, INDEX), (0.7, INDEX), (50.0, INDEX),
    (0.01, GOLD), (0.05, GOLD),
])
def test_on_step_lots_are_sent_as_they_are(lots, limits):
    sized = size_lots(lots, limits)
    assert sized.lots == lots and not sized.off_step


@pytest.mark.parametrize("lots,limits,code", [
    (0.0, FX, "ZERO_LOT"),
    (-0.01, FX, "ZERO_LOT"),
    (math.nan, FX, "ZERO_LOT"),
    (0.015, FX, "OFF_STEP"),       # would be rounded to 0.02 (more risk) by a silent rounding
    (0.005, FX, "OFF_STEP"),
    (0.15, INDEX, "OFF_STEP"),
    (0.001, INDEX, "OFF_STEP"),
    (0.05, INDEX, "OFF_STEP"),
    (100.01, FX, "ABOVE_MAX"),
    (60.0, INDEX, "ABOVE_MAX"),
    (0.01, None, "NO_SYMBOL_DATA"),
    (0.01, VolumeLimits(0.01, 0.01, 100.0, 0), "NO_SYMBOL_DATA"),
    (0.01, VolumeLimits(0.01, 0.0, 100.0, 100_000), "NO_SYMBOL_DATA"),
    (0.01, VolumeLimits(0.2, 0.01, 0.1, 100_000), "NO_SYMBOL_DATA"),
    (0.01, VolumeLimits(0.01, math.nan, 100.0, 100_000), "NO_SYMBOL_DATA"),
])
def test_lots_refused(lots, limits, code):
    with pytest.raises(LotError) as info:
        size_lots(lots, limits)
    assert info.value.code == code
    assert info.value.requested == lots or math.isnan(lots)


def test_off_step_refusal_names_the_rule():
    with pytest.raises(LotError) as info:
        size_lots(0.015, FX)
    assert "step 0.01" in str(info.value) and "off_step rule: refuse" in str(info.value)


# lots, limits, sent: the largest whole number of steps below, never more than configured
ROUNDED = [
    (0.015, FX, 0.01),
    (0.039, FX, 0.03),
    (0.15, INDEX, 0.1),
    (0.35, INDEX, 0.3),
    (1.234, GOLD, 1.23),
]


@pytest.mark.parametrize("lots,limits,sent", ROUNDED)
def test_round_down_rule(lots, limits, sent):
    sized = size_lots(lots, limits, OffStepRule.ROUND_DOWN)
    assert (sized.requested, sized.lots, sized.rule, sized.off_step, sized.rounded) == (
        lots, sent, OffStepRule.ROUND_DOWN, True, True)
    assert sized.lots <= lots


@pytest.mark.parametrize("lots,limits,code", [
    (0.005, FX, "BELOW_MIN"),  # rounds down to 0 lots
    (0.05, INDEX, "BELOW_MIN"),
    (100.019, FX, "ABOVE_MAX"),
])
def test_round_down_still_checks_the_limits(lots, limits, code):
    with pytest.raises(LotError) as info:
        size_lots(lots, limits, OffStepRule.ROUND_DOWN)
    assert info.value.code == code and "rounded down" in str(info.value)


def test_round_down_leaves_on_step_lots_alone():
    sized = size_lots(0.03, FX, OffStepRule.ROUND_DOWN)
    assert (sized.lots, sized.off_step, sized.rounded) == (0.03, False, False)


def test_the_symbol_config_chooses_the_rule():
    cfg = CFG.model_copy(update={"lot_weak": 0.015})
    with pytest.raises(LotError) as info:
        lots_to_send(cfg, 1, FX)
    assert info.value.code == "OFF_STEP"
    sized = lots_to_send(cfg.model_copy(update={"off_step": "round_down"}), 1, FX)
    assert (sized.requested, sized.lots, sized.rule) == (0.015, 0.01, OffStepRule.ROUND_DOWN)


def test_below_min_with_finer_step():
    limits = VolumeLimits(min_lots=0.1, step_lots=0.01, max_lots=1000.0, contract_size=100_000)
    with pytest.raises(LotError) as info:
        size_lots(0.05, limits)
    assert info.value.code == "BELOW_MIN"
    assert "0.1 lots" in str(info.value)


def test_wait_intensity_is_zero_lot():
    with pytest.raises(LotError) as info:
        lots_to_send(CFG, 0, FX)
    assert info.value.code == "ZERO_LOT"


@pytest.mark.parametrize("cfg,limits,lots,intensities", [
    (CFG, FX, 0.01, (1,)),
    (CFG, FX, 0.03, (2,)),
    (CFG, FX, 0.05, (3,)),
    (CFG, FX, 0.02, ()),  # lots of no intensity
    (CFG, None, 0.03, (2,)),  # limits unknown: the configured lots
    (CFG, FX, 0.1 + 0.2 - 0.27, (2,)),  # float noise
    (ROUND_DOWN.model_copy(update={"lot_moderate": 0.035}), FX, 0.03, (2,)),  # what round_down sends
    (ROUND_DOWN.model_copy(update={"lot_moderate": 0.015}), FX, 0.01, (1, 2)),  # both send 0.01
    (CFG.model_copy(update={"lot_moderate": 0.035}), FX, 0.035, ()),  # refused: never opened by us
])
def test_intensities_of_lots(cfg, limits, lots, intensities):
    assert intensities_of_lots(cfg, lots, limits) == intensities


def test_same_lots():
    assert same_lots(0.03, 0.1 + 0.2 - 0.27) and not same_lots(0.03, 0.031)


def test_check_config_lots_reports_each_bad_intensity():
    cfg = SymbolConfig(enabled=True, lot_weak=0.1, lot_moderate=0.25, lot_strong=0.0)
    problems = check_config_lots(cfg, INDEX)
    assert list(problems) == [2]
    assert problems[2].startswith("OFF_STEP")
    assert check_config_lots(CFG, FX) == {}
    rounded = check_config_lots(cfg.model_copy(update={"off_step": "round_down"}), INDEX)
    assert list(rounded) == [2] and rounded[2].startswith("ROUNDED_DOWN") and "0.2 lots" in rounded[2]
