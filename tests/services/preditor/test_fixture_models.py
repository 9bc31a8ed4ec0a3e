"""The fixture models (tests/fixtures/models/, scripts/train_fixture_models.py): each loads in the preditor's
loader with the symbol and timeframe of its name, and `backtest.replay` runs it on the bars the simulator serves
for that symbol and timeframe, changing position often (what the soak needs to place orders on most days)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from services.connector.sim import catalog
from services.connector.sim.replay import parse_csv
from services.connector.sim.series import served_bars
from services.preditor import backtest
from services.preditor.model_file import load_model

REPO = Path(__file__).resolve().parents[3]
FIXTURES = REPO / "tests" / "fixtures" / "models"
NAMES = ("EURUSD_M15", "GBPUSD_M15", "USDJPY_M15", "XAUUSD_M15", "EURGBP_M15", "EURUSD_H4")
DECEMBER = 1512086400  # 2017-12-01 00:00 UTC


@pytest.fixture(scope="module")
def source():
    return parse_csv((REPO / "data" / "EURUSD_H1_2017.csv").read_text())


def test_the_fixture_directory_holds_exactly_the_documented_models():
    assert sorted(p.stem for p in FIXTURES.glob("*.zip")) == sorted(NAMES)
    assert all(p.stat().st_size < 64_000 for p in FIXTURES.glob("*.zip"))


@pytest.mark.parametrize("name", NAMES)
def test_a_fixture_model_loads_replays_and_changes_position(name, source):
    symbol, timeframe = name.split("_")
    model = load_model(FIXTURES / f"{name}.zip")
    assert (model.symbol, model.timeframe) == (symbol, timeframe)
    bars = served_bars(source, catalog.CATALOG[symbol], timeframe, DECEMBER - 100 * 86400, source[-1].time + 3600)
    rows = np.array([[b.time, b.open, b.high, b.low, b.close, b.volume] for b in bars])
    first = next(i for i, b in enumerate(bars) if b.time >= DECEMBER)
    decisions = backtest.replay(model, rows[first - model.spec.window + 1:])
    assert [d.bar_time for d in decisions] == [b.time for b in bars[first:]]
    assert decisions == backtest.replay(model, rows[first - model.spec.window + 1:])  # deterministic
    # December: entries (a new non-WAIT direction) on most days that have bars
    entries = {int(b.bar_time) // 86400 for a, b in zip(decisions, decisions[1:], strict=False)
               if b.direction != a.direction and b.direction != 0}
    days = {int(d.bar_time) // 86400 for d in decisions}
    assert len(entries) >= len(days) * 2 // 3, f"{name}: entries on {len(entries)} of {len(days)} days"
