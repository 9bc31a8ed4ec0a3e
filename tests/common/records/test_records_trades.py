"""Trade-log records from real fills/closes and paper trades."""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from common.records.schema import RecordInvalid
from common.records.trades import PaperOpening, PaperTrade, paper_opening, paper_trade, real_trade
from services.persistence.store import Store

T = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)

REAL_CLOSE = {
    "deal_id": "88231", "position_id": "5501", "symbol": "EURUSD", "action": "CLOSE", "direction": -1,
    "volume": 0.2, "time": T, "entry_price": 1.10500, "exit_price": 1.10380, "gross_pnl": 24.0,
    "commission": 1.4, "swap": -0.3, "pip_size": 0.0001, "intensity": 2, "hmm_state": 4,
    "bar_time": T - timedelta(hours=1), "comment": "oracle|EURUSD|S2", "client_order_id": "c-1",
    "unused_extra_field": "ignored",
}
TS = int(T.timestamp())
PAPER = PaperTrade(symbol="GBPUSD", direction=1, intensity=3, lot=0.3, entry_time=TS - 5 * 3600, entry_price=1.2700,
                   exit_time=TS, exit_price=1.2725, pips=25.0, gross_pnl=75.0, commission=2.1, pnl=72.9, hmm_state=1)


def test_real_close():
    t = real_trade(REAL_CLOSE, session_id="abcd1234")
    assert (t.symbol, t.direction, t.action, t.is_paper, t.volume) == ("EURUSD", -1, "CLOSE", False, 0.2)
    assert t.pnl == pytest.approx(24.0 - 1.4 - 0.3)
    assert t.pnl_pips == pytest.approx(12.0)  # short: (1.10500 - 1.10380) / 0.0001
    assert (t.timestamp, t.bar_time, t.position_id, t.client_order_id) == (T, T - timedelta(hours=1), "5501", "c-1")
    assert t.trade_id == t.id.hex[:8] and t.hmm_state == 4 and t.comment == "oracle|EURUSD|S2"
    assert real_trade(dict(REAL_CLOSE), session_id="other").id == t.id  # same deal, same id


def test_real_open_fill_has_no_exit_and_only_costs():
    t = real_trade({**REAL_CLOSE, "action": "OPEN", "deal_id": "88000", "exit_price": None, "gross_pnl": 0,
                    "swap": 0}, session_id="s")
    assert (t.exit_price, t.pnl, t.pnl_pips, t.commission) == (None, -1.4, 0.0, 1.4)


def test_paper_trade_uses_bar_time_and_net_pnl():
    t = paper_trade(PAPER, timeframe="H1", session_id="abcd1234")
    assert (t.is_paper, t.action, t.timestamp, t.bar_time, t.volume) == (True, "CLOSE", T, T, 0.3)
    assert t.pnl == pytest.approx(72.9) and t.pnl_pips == pytest.approx(25.0) and t.commission == 2.1
    assert paper_trade(PAPER, timeframe="H1", session_id="x").id == t.id  # replay after restart: same id
    assert paper_trade(replace(PAPER, exit_time=TS + 3600), timeframe="H1", session_id="x").id != t.id


def test_a_paper_trades_id_is_the_one_stored_before_the_move():
    # derived as persistence derived it before the trade type moved to common/records: a book re-sent after an
    # upgrade is a duplicate, not a second trade
    assert str(paper_trade(PAPER, timeframe="H1", session_id="s").id) == "12bddfd9-acc6-54de-ad0f-1718cb8c6ef8"


def test_a_paper_opening_is_the_same_live_and_read_back_from_its_trade():
    live = PaperOpening("GBPUSD", 1, 3, 0.3, TS - 5 * 3600, 1.2700)
    assert PAPER.opening() == live
    o = paper_opening(live, timeframe="H1", session_id="s")
    assert (o.action, o.timestamp, o.entry_price, o.exit_price, o.pnl, o.commission, o.is_paper) == (
        "OPEN", T - timedelta(hours=5), 1.27, None, 0.0, 0.0, True)
    assert o.id != paper_trade(PAPER, timeframe="H1", session_id="s").id
    assert replace(PAPER, entry_time=None).opening() is None


@pytest.mark.parametrize(("bad", "field"), [
    ({"direction": 0}, "direction"),
    ({"time": datetime(2026, 1, 1)}, "time"),
    ({"commission": -1.0}, "commission"),
    ({"deal_id": None}, "deal_id"),
    ({"action": "FLIP"}, "action"),
])
def test_real_fill_errors_name_the_field(bad, field):
    with pytest.raises(RecordInvalid, match=rf"real fill\.{field}"):
        real_trade({**REAL_CLOSE, **bad}, session_id="s")


def test_trades_store_and_dedupe(tmp_path):
    with Store.open(tmp_path / "s.db") as store:
        acks = store.write_batch([("trades", real_trade(REAL_CLOSE, session_id="s")),
                                  ("trades", paper_trade(PAPER, timeframe="H1", session_id="s")),
                                  ("trades", paper_trade(PAPER, timeframe="H1", session_id="s"))])
        assert [a.status for a in acks] == ["stored", "stored", "duplicate"]
        assert store.trade_totals("s", is_paper=True) == (1, pytest.approx(72.9))


def _json_pairs(rng):
    """Paper trades and openings of every shape: either direction, intensities, no HMM state or no entry time,
    prices and costs of many magnitudes, old and far bar times, and values the model converts or refuses."""
    import math
    for i in range(400):
        direction = rng.choice((-1, 1, 0))
        entry = rng.choice((None, TS - rng.randrange(1, 10_000) * 3600, 0, 86_400 * 365 * 900))
        exit_ = (entry or TS) + rng.randrange(1, 500) * 3600
        price = rng.choice((1.27, 151.234, 0.6543, 1e-7, 12_345.678)) * (1 + rng.gauss(0, 0.01))
        trade = PaperTrade(symbol=rng.choice(("GBPUSD", "XAUUSD", "SYN07")), direction=direction,
                           intensity=rng.randrange(4), lot=rng.choice((0.01, 0.3, 1.0, 0.0)), entry_time=entry,
                           entry_price=price, exit_time=exit_, exit_price=price * (1 + rng.gauss(0, 0.01)),
                           pips=rng.choice((25.0, -3.3, 0.0, rng.gauss(0, 100))), gross_pnl=rng.gauss(0, 200),
                           commission=rng.choice((0.0, 2.1, 7.000000001)), pnl=0.0,
                           hmm_state=rng.choice((None, 0, 3, 11)))
        if i % 40 == 1:  # converted by the model (an int price, a float lot), or refused (NaN, a bad intensity)
            trade = replace(trade, **rng.choice(({"entry_price": 2}, {"lot": 1}, {"gross_pnl": math.nan},
                                                 {"intensity": 4}, {"direction": 2}, {"commission": math.inf})))
        yield trade, trade.opening()


@pytest.mark.parametrize("timeframe", ["H1", "M15", None])
def test_the_direct_json_records_are_the_models_own(timeframe):
    """paper_trade_json / paper_opening_json: the dict (and its JSON text, key order included) of the validated
    record's model_dump(mode="json"); what the model refuses is refused the same way."""
    import json
    import random

    from common.records.trades import paper_opening_json, paper_trade_json
    checked = 0
    for trade, opening in _json_pairs(random.Random(15)):
        for make, make_json, value in ((paper_trade, paper_trade_json, trade),
                                       (paper_opening, paper_opening_json, opening)):
            if value is None:
                continue
            try:
                want = make(value, timeframe=timeframe, session_id="").model_dump(mode="json")
            except RecordInvalid as exc:
                with pytest.raises(RecordInvalid) as got:
                    make_json(value, timeframe=timeframe, session_id="")
                assert str(got.value) == str(exc)
                continue
            got = make_json(value, timeframe=timeframe, session_id="")
            assert got == want
            assert json.dumps(got) == json.dumps(want)
            assert [type(v) for v in got.values()] == [type(v) for v in want.values()]
            checked += 1
    assert checked > 600


def _real_fills(rng):
    """Real fills and closes as the connector makes them (real_trades.fill_input / closed_input's dicts), some
    with values the models convert (an int price, a naive or non-UTC time) or refuse (NaN, a zero direction, a
    negative volume, an empty deal id)."""
    from datetime import timezone
    for i in range(900):
        closing = i % 2 == 1
        price = rng.choice((1.1, 1.23456, 150.123, 2000.5))
        fill = {"deal_id": str(rng.randrange(1, 10**9)), "position_id": rng.choice((str(rng.randrange(10**6)), None)),
                "symbol": rng.choice(("EURUSD", "XAUUSD", "SYN07")), "direction": rng.choice((-1, 1)),
                "volume": rng.choice((0.01, 0.3, 1.0, 0.0)), "time": T + timedelta(seconds=rng.randrange(10**7)),
                "entry_price": price, "bar_time": rng.choice((None, T - timedelta(hours=1))),
                "client_order_id": rng.choice((None, "c-1")), "comment": rng.choice((None, "oracle|x", "")),
                "unused_extra_field": 1}
        if rng.random() < 0.5:
            fill["intensity"] = rng.choice((0, 1, 3))
            fill["hmm_state"] = rng.choice((None, 0, 4))
        if closing:
            fill.update(action=rng.choice(("CLOSE", "PARTIAL_CLOSE")), exit_price=price * (1 + rng.gauss(0, 0.01)),
                        gross_pnl=rng.gauss(0, 200), commission=rng.choice((0.0, 1.4, 7.000000001)),
                        swap=rng.choice((0.0, -0.3, 2.5)), pip_size=rng.choice((None, 0.0001, 0.01)))
            if rng.random() < 0.1:
                fill["pnl_pips"] = rng.choice((None, 3.5, -0.0))
        else:
            fill.update(action="OPEN", commission=rng.choice((0.0, 0.3)))
        if i % 30 == 7:  # converted by the models, or refused by them
            fill.update(rng.choice(({"entry_price": 2}, {"volume": 1}, {"gross_pnl": math.nan}, {"intensity": 4},
                                    {"direction": 0}, {"commission": math.inf}, {"volume": -0.1}, {"deal_id": ""},
                                    {"time": datetime(2026, 3, 2, 10, 0)}, {"symbol": ""}, {"hmm_state": True},
                                    {"time": T.astimezone(timezone(timedelta(hours=2)))}, {"pip_size": 0.0},
                                    {"comment": 5}, {"action": "FLIP"}, {"swap": 1})))
        yield fill


def test_the_direct_json_real_trade_is_the_models_own():
    """real_trade_json: the dict (and its JSON text, key order and value types included) of the validated record's
    model_dump(mode="json"); what the models refuse is refused the same way."""
    import json
    import random

    from common.records.trades import real_trade_json
    checked = refused = 0
    for fill in _real_fills(random.Random(15)):
        try:
            want = real_trade(fill, session_id="").model_dump(mode="json")
        except RecordInvalid as exc:
            with pytest.raises(RecordInvalid) as got:
                real_trade_json(fill, session_id="")
            assert str(got.value) == str(exc)
            refused += 1
            continue
        got = real_trade_json(fill, session_id="")
        assert got == want
        assert json.dumps(got) == json.dumps(want)
        assert [type(v) for v in got.values()] == [type(v) for v in want.values()]
        checked += 1
    assert checked > 800 and refused > 5
