"""The load steps of the executor and paper keep the models the preditor loaded (common/model_meta.live_only)."""

import pytest

from common.model_meta import ModelMeta, live_only
from common.twin.position import CostModel

COSTS = CostModel(point=1e-5, pip_value=10.0, spread_points=10.0, slippage_points=0.0, commission_per_lot=7.0,
                  digits=5)
METAS = [ModelMeta("EURUSD", "H1", COSTS, "EURUSD_H1.zip"), ModelMeta("GBPUSD", "M15", COSTS, "GBPUSD_M15.zip")]


def test_a_model_the_preditor_refused_is_left_out_and_said_so():
    kept, dropped = live_only(METAS, {"live_models": ["EURUSD"]})
    assert [m.symbol for m in kept] == ["EURUSD"]
    assert dropped == ["GBPUSD_M15.zip: not loaded by the preditor (GBPUSD not live)"]


def test_without_the_preditors_word_every_readable_model_counts():
    assert live_only(METAS, {}) == (METAS, [])


@pytest.mark.parametrize("bad", ["EURUSD", [1], None])
def test_a_malformed_argument_is_refused_naming_it(bad):
    with pytest.raises(ValueError, match="live_models"):
        live_only(METAS, {"live_models": bad})
