import pytest

from services.paper.drift import ALL, TradeRecord, drift_table, equity_curves, render_markdown, verdict


def real(symbol, pnl, exit_time=1000, lot=0.01, costs=0.0):
    """A real trade of net `pnl`, of which `costs` (commission + swap, <= 0 when charged)."""
    return TradeRecord(symbol, 1, lot, exit_time - 900, exit_time, pnl, pnl - costs, is_paper=False)


def paper(symbol, pnl, exit_time=1000, lot=0.01, costs=0.0):
    return TradeRecord(symbol, 1, lot, exit_time - 900, exit_time, pnl, pnl - costs, is_paper=True)


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
    assert lines[2].startswith("| EURUSD | 1 | 1 | 2.00 | 1.00 | 1.00 | 1.00 | 0.00 | 50.0 | 100.0 | 100.0 |")
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


# name, trades of one symbol, price drift, cost drift (paper - real), total drift
SPLITS = [
    ("same move, the broker charges more", [paper("EURUSD", 9.3, costs=-0.7), real("EURUSD", 8.6, costs=-1.4)],
     0.0, 0.7, 0.7),
    ("worse fills, same costs", [paper("EURUSD", 9.3, costs=-0.7), real("EURUSD", 7.3, costs=-0.7)], 2.0, 0.0, 2.0),
    ("swap charged on the real side only", [paper("EURUSD", -5.7, costs=-0.7),
                                            real("EURUSD", -8.3, costs=-1.3 - 1.2)], 0.8, 1.8, 2.6),
    ("a missed entry: paper only", [paper("EURUSD", 4.3, costs=-0.7)], 5.0, -0.7, 4.3),
    ("real only", [real("EURUSD", -2.0, costs=-0.5)], 1.5, 0.5, 2.0),
    ("several trades each side", [paper("EURUSD", 1.0, costs=-0.7), paper("EURUSD", 2.0, costs=-2.1),
                                  real("EURUSD", 0.1, costs=-0.9), real("EURUSD", 1.1, costs=-0.3),
                                  real("EURUSD", 0.2, costs=-0.4)], 2.8, -1.2, 1.6),  # better fills, dearer
]


@pytest.mark.parametrize("name,trades,price,cost,total", SPLITS, ids=[r[0] for r in SPLITS])
def test_drift_splits_into_price_and_cost(name, trades, price, cost, total):
    row, all_row = drift_table(trades)
    for r in (row, all_row):
        assert r.pnl_drift == pytest.approx(total)
        assert r.price_drift == pytest.approx(price)
        assert r.cost_drift == pytest.approx(cost)
        assert r.price_drift + r.cost_drift == r.pnl_drift  # exactly: the parts add up to today's drift
        assert r.cost_drift == pytest.approx(r.paper_costs - r.real_costs)
        assert r.pnl_drift == pytest.approx(r.paper_pnl - r.real_pnl)


# row as read, net pnl, gross pnl
FORMS = [
    # a real close as the broker gives it (closed.<SYM>): gross, commission and swap negative, net
    ({"gross_profit": 10.0, "commission": -0.7, "swap": -0.3, "net_profit": 9.0}, 9.0, 10.0),
    # the same from the store (trades table): net pnl, commission positive, swap signed
    ({"pnl": 9.0, "commission": 0.7, "swap": -0.3}, 9.0, 10.0),
    # a paper trade (account.PaperTrade): gross, round-trip commission, net
    ({"gross_pnl": 5.0, "commission": 0.7, "pnl": 4.3}, 4.3, 5.0),
    # gross only: the net is made from the costs
    ({"gross_pnl": 5.0, "commission": "0.7", "swap": "0.2"}, 4.5, 5.0),
    # net only, no costs known: all of it is price
    ({"pnl": "-1.5"}, -1.5, -1.5),
    ({"pnl": -1.5, "commission": "", "swap": ""}, -1.5, -1.5),
]


@pytest.mark.parametrize("money,net,gross", FORMS)
def test_trade_money_forms(money, net, gross):
    record = TradeRecord.from_dict({"symbol": "EURUSD", "direction": 1, "lot": 0.01, "exit_time": 900, **money})
    assert record.pnl == pytest.approx(net) and record.gross_pnl == pytest.approx(gross)
    assert record.costs == pytest.approx(net - gross)


@pytest.mark.parametrize("money,error", [
    ({"gross_pnl": 10.0, "commission": 0.7, "pnl": 9.5}, ValueError),  # does not add up
    ({"commission": 0.7}, KeyError),  # no money at all
])
def test_trade_money_that_does_not_add_up_is_refused(money, error):
    with pytest.raises(error):
        TradeRecord.from_dict({"symbol": "EURUSD", "direction": 1, "exit_time": 900, **money})


def test_a_paper_trade_of_the_account_reads_as_is():
    from services.paper.account import PaperTrade

    trade = PaperTrade(1, 1, 0.01, 0, 1.1, 900, 1.105, 50.0, 5.0, 0.7, 4.3, symbol="EURUSD", hmm_state=2)
    record = TradeRecord.from_dict({**trade.to_dict(), "entry_time": trade.entry_time})
    assert (record.pnl, record.gross_pnl, record.is_paper) == (4.3, 5.0, True)
