"""The one timeframe table and what derives from it."""

import pytest

from common import config, timeframes
from services.connector.ctrader import periods


def test_traded_timeframes_are_what_a_config_may_name():
    assert config.TIMEFRAMES == {"M1": 60, "M5": 300, "M15": 900, "M30": 1800, "H1": 3600, "H4": 14400, "D1": 86400}


@pytest.mark.parametrize("name", list(timeframes.TRADED))
def test_bars_per_year_is_252_days_of_20_hours(name):
    per_day = max(1, 20 * 3600 // timeframes.seconds_of(name))  # D1: one bar a day
    assert timeframes.bars_per_year(name) == 252 * per_day
    assert timeframes.bars_per_year(name.lower()) == timeframes.bars_per_year(name)


def test_a_broker_period_has_a_length_but_no_year():
    assert timeframes.seconds_of("M2") == 120
    with pytest.raises(ValueError, match="unsupported timeframe 'M2'"):
        timeframes.bars_per_year("M2")


@pytest.mark.parametrize("bad", ["W1", "MN1", "", "H2"])
def test_unknown_names_are_refused_by_name(bad):
    with pytest.raises(ValueError, match=f"unsupported timeframe {bad!r}"):
        timeframes.seconds_of(bad)
    with pytest.raises(ValueError, match=f"unsupported timeframe {bad!r}"):
        periods.period_of(bad)


def test_every_ctrader_period_is_a_table_entry_and_back():
    assert set(periods.PERIODS) == set(timeframes.TABLE)
    for name, period in periods.PERIODS.items():
        assert periods.name_of(period) == name
        assert periods.period_seconds(period) == timeframes.TABLE[name].seconds
    assert periods.period_of("h1") == 9 and periods.seconds_of("H4") == 14_400
    with pytest.raises(ValueError, match="unsupported trendbar period 13"):
        periods.name_of(13)
