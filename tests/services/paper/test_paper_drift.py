import pytest

from services.paper.drift import ALL, TradeRecord, drift_table, equity_curves, render_markdown, verdict


def real(symbol, pnl, exit_time=1000, lot=0.01):
    return TradeRecord(symbol, 1, lot, exit_time - 900, exit_time, pnl, is_paper=False)


def paper(symbol, pnl, exit_time=1000, lot=0.01):
    return TradeRecord(symbol, 1, lot, exit_time - 900, exit_time, pnl, is_paper=True)


@pytest.mark.parametrize("real_pnl,paper_pnl,n_real,n_paper,expected", [
    (5.0, 8.0, 2, 3, "HEALTHY"),
    (-5.0, 8.0, 2, 3, "EXECUTION_DRIFT"),
    (0.0, 8.0, 0, 3, "EXECUTION_DRIFT"),  # the account never traded what the model earned
    (-5.0, -8.0, 2, 3, "MARKET_DRIFT"),
    (5.0, -8.0, 2, 3, "INVESTIGATE"),
    (0.0, 0.0, 0, 0, "NO_DATA"),
])
def test_verdict(real_pnl, paper_pnl, n_real, n_paper, expected):
    assert verdict(real_pnl, paper_pnl, n_real, n_paper) == expected


def test_drift_table_per_symbol_and_total():
    trades = [
        paper("EURUSD", 3.0), paper("EURUSD", -1.0), paper("EURUSD", 2.0, lot=0.03),
        real("EURUSD", 1.0), real("EURUSD", -2.0, lot=0.03),
        paper("USDJPY", -4.0), real("USDJPY", -6.0),
        real("GBPUSD", 1.5),
    ]
    rows = {r.symbol: r for r in drift_table(trades)}
    assert list(rows) == ["EURUSD", "GBPUSD", "USDJPY", ALL]
    eur = rows["EURUSD"]
    assert (eur.paper_trades, eur.real_trades) == (3, 2)
    assert (eur.paper_pnl, eur.real_pnl, eur.pnl_drift) == (4.0, -1.0, 5.0)
    assert eur.pnl_drift_pct == pytest.approx(125.0)
    assert eur.paper_win_rate == pytest.approx(2 / 3) and eur.real_win_rate == 0.5
    assert eur.paper_pnl_per_lot == pytest.approx(4.0 / 0.05)
    assert eur.real_pnl_per_lot == pytest.approx(-1.0 / 0.04)
    assert eur.verdict == "EXECUTION_DRIFT"
    assert rows["USDJPY"].verdict == "MARKET_DRIFT"
    gbp = rows["GBPUSD"]
    assert (gbp.paper_trades, gbp.pnl_drift_pct, gbp.paper_pnl_per_lot, gbp.verdict) == (0, None, None,
                                                                                          "INVESTIGATE")
    total = rows[ALL]
    assert (total.paper_trades, total.real_trades) == (4, 4)
    assert total.paper_pnl == pytest.approx(0.0) and total.real_pnl == pytest.approx(-5.5)


def test_window_on_exit_time():
    trades = [paper("EURUSD", 1.0, exit_time=100), paper("EURUSD", 2.0, exit_time=200),
              real("EURUSD", 4.0, exit_time=300)]
    rows = drift_table(trades, since=150, until=300)
    assert [(r.symbol, r.paper_pnl, r.real_trades) for r in rows] == [("EURUSD", 2.0, 0), (ALL, 2.0, 0)]


def test_empty_input_has_only_the_total():
    rows = drift_table([])
    assert [(r.symbol, r.verdict) for r in rows] == [(ALL, "NO_DATA")]


def test_render_markdown():
    text = render_markdown(drift_table([paper("EURUSD", 2.0), real("EURUSD", 1.0)]))
    lines = text.splitlines()
    assert len(lines) == 4
    assert lines[2].startswith("| EURUSD | 1 | 1 | 2.00 | 1.00 | 1.00 | 50.0 | 100.0 | 100.0 |")
    assert lines[2].endswith("| HEALTHY |")


def test_equity_curves_cumulative():
    curves = equity_curves([paper("EURUSD", 1.0, 200), paper("EURUSD", -3.0, 100), real("USDJPY", 2.0, 150)])
    assert curves[("EURUSD", True)] == [(100, -3.0), (200, -2.0)]
    assert curves[(ALL, True)] == [(100, -3.0), (200, -2.0)]
    assert curves[("USDJPY", False)] == [(150, 2.0)]


@pytest.mark.parametrize("row,is_paper,lot", [
    ({"symbol": "EURUSD", "direction": "1", "lot": "0.03", "entry_time": "", "exit_time": "900",
      "pnl": "-1.5", "is_paper": "true"}, True, 0.03),
    ({"symbol": "EURUSD", "direction": -1, "volume": 0.05, "entry_time": 0, "exit_time": 900, "pnl": 2.0},
     False, 0.05),
])
def test_trade_record_from_dict(row, is_paper, lot):
    record = TradeRecord.from_dict(row)
    assert (record.is_paper, record.lot) == (is_paper, lot)
    assert TradeRecord.from_dict(record.to_dict()) == record
