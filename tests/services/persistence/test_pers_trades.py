"""Trade-log records from real fills/closes and paper trades."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.persistence.records import RecordInvalid
from services.persistence.store import Store
from services.persistence.trades import paper_trade, real_trade

T = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)

REAL_CLOSE = {
    "deal_id": "88231", "position_id": "5501", "symbol": "EURUSD", "action": "CLOSE", "direction": -1,
    "volume": 0.2, "time": T, "entry_price": 1.10500, "exit_price": 1.10380, "gross_pnl": 24.0,
    "commission": 1.4, "swap": -0.3, "pip_size": 0.0001, "intensity": 2, "hmm_state": 4,
    "bar_time": T - timedelta(hours=1), "comment": "oracle|EURUSD|S2", "client_order_id": "c-1",
    "unused_extra_field": "ignored",
}
PAPER = {
    "symbol": "GBPUSD", "timeframe": "H1", "direction": 1, "intensity": 3, "volume": 0.3,
    "entry_time": T - timedelta(hours=5), "exit_time": T, "entry_price": 1.2700, "exit_price": 1.2725,
    "gross_pnl": 75.0, "commission": 2.1, "pip_size": 0.0001, "hmm_state": 1,
}


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
    t = paper_trade(PAPER, session_id="abcd1234")
    assert (t.is_paper, t.action, t.timestamp, t.bar_time) == (True, "CLOSE", T, T)
    assert t.pnl == pytest.approx(72.9) and t.pnl_pips == pytest.approx(25.0)
    assert paper_trade(PAPER, session_id="x").id == t.id  # replay after restart: same id
    assert paper_trade({**PAPER, "exit_time": T + timedelta(hours=1)}, session_id="x").id != t.id


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


def test_missing_paper_field_is_named():
    data = dict(PAPER)
    del data["exit_price"]
    with pytest.raises(RecordInvalid, match=r"paper trade\.exit_price: Field required"):
        paper_trade(data, session_id="s")


def test_trades_store_and_dedupe(tmp_path):
    with Store.open(tmp_path / "s.db") as store:
        acks = store.write_batch([("trades", real_trade(REAL_CLOSE, session_id="s")),
                                  ("trades", paper_trade(PAPER, session_id="s")),
                                  ("trades", paper_trade(PAPER, session_id="s"))])
        assert [a.status for a in acks] == ["stored", "stored", "duplicate"]
        assert store.trade_totals("s", is_paper=True) == (1, pytest.approx(72.9))
