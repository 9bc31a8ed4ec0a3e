import json

import pytest

from common.timeframes import bars_per_year
from common.twin.position import CostModel
from services.paper.account import (
    PaperAccount,
    PaperBook,
    book_on_action,
    book_on_signal,
    new_account,
    new_book,
    on_signal,
    replay,
)

EURUSD_COSTS = CostModel()  # training defaults: 7 pt spread, 2 pt slippage, 7 USD/lot commission
JPY_COSTS = CostModel(point=0.001, digits=3)


def test_reference_worked_example():
    """LONG_WEAK at 1.10000 -> entry 1.10009; WAIT at 1.10100 -> exit 1.10098: 8.9 pips, 0.89 - 0.07."""
    account = new_account("EURUSD", EURUSD_COSTS)
    step = on_signal(account, 1, 1, 1.10000, 900, hmm_state=2)
    assert step.account.position.entry_price == pytest.approx(1.10009)
    assert step.account.balance == pytest.approx(10_000 - 0.035)
    step = on_signal(step.account, 0, 0, 1.10100, 1800, hmm_state=4)
    trade = step.closed
    assert trade.exit_price == pytest.approx(1.10098)
    assert trade.pips == pytest.approx(8.9)
    assert trade.gross_pnl == pytest.approx(0.89)
    assert trade.commission == pytest.approx(0.07)
    assert trade.pnl == pytest.approx(0.82)
    assert (trade.symbol, trade.hmm_state, trade.entry_time, trade.exit_time) == ("EURUSD", 4, 900, 1800)
    assert step.account.balance == pytest.approx(10_000.82)
    assert step.account.position.is_flat


# signal sequences: (direction, intensity, close) per bar -> expected closed trades, final direction/intensity
SEQUENCES = [
    ("hold", [(1, 1, 1.1), (1, 1, 1.101), (1, 1, 1.102)], 0, (1, 1)),
    ("intensity change closes and reopens", [(1, 1, 1.1), (1, 3, 1.101)], 1, (1, 3)),
    ("reversal closes and opens", [(1, 2, 1.1), (-1, 2, 1.099)], 1, (-1, 2)),
    ("wait closes", [(-1, 1, 1.1), (0, 0, 1.099), (0, 0, 1.098)], 1, (0, 0)),
    ("flat stays flat", [(0, 0, 1.1), (0, 0, 1.2)], 0, (0, 0)),
]


@pytest.mark.parametrize("name,signals,n_trades,final", SEQUENCES, ids=[s[0] for s in SEQUENCES])
def test_sequences(name, signals, n_trades, final):
    account = new_account("EURUSD", EURUSD_COSTS)
    for i, (direction, intensity, close) in enumerate(signals):
        account = on_signal(account, direction, intensity, close, 900 * (i + 1)).account
    assert len(account.trades) == n_trades
    assert (account.position.direction, account.position.intensity) == final


def test_equity_is_balance_plus_floating():
    account = on_signal(new_account("EURUSD", EURUSD_COSTS), 1, 3, 1.10000, 900).account
    account = on_signal(account, 1, 3, 1.10109, 1800).account  # 10 pips above entry, 0.05 lot
    assert account.position.floating_pnl == pytest.approx(5.0)
    assert account.equity == pytest.approx(10_000 - 0.175 + 5.0)


def test_sum_of_trade_pnl_is_the_balance_change_when_flat():
    signals = [(1, 1, 1.1), (1, 3, 1.1012), (-1, 2, 1.1003), (0, 0, 1.0990), (1, 1, 1.0995), (0, 0, 1.0991)]
    account = new_account("EURUSD", EURUSD_COSTS)
    for i, (d, k, close) in enumerate(signals):
        account = on_signal(account, d, k, close, 900 * (i + 1)).account
    assert account.position.is_flat
    assert sum(t.pnl for t in account.trades) == pytest.approx(account.balance - 10_000)


def test_replayed_signal_is_ignored():
    account = on_signal(new_account("EURUSD", EURUSD_COSTS), 1, 1, 1.1, 900).account
    step = on_signal(account, -1, 3, 1.2, 900)
    assert not step.applied and step.account is account
    assert not on_signal(account, 0, 0, 1.2, 0).applied


@pytest.mark.parametrize("direction,intensity", [(2, 1), (1, 0), (0, 1), (1, 4)])
def test_bad_signal(direction, intensity):
    with pytest.raises(ValueError):
        on_signal(new_account("EURUSD", EURUSD_COSTS), direction, intensity, 1.1, 900)


SIGNALS = [
    ("EURUSD", 1, 1, 1.10000, 900, 1), ("USDJPY", -1, 2, 150.000, 900, 0),
    ("EURUSD", 1, 2, 1.10050, 1800, 1), ("USDJPY", -1, 2, 149.900, 1800, 2),
    ("EURUSD", -1, 1, 1.10020, 2700, 3), ("USDJPY", 0, 0, 149.700, 2700, 2),
    ("EURUSD", 0, 0, 1.09900, 3600, 0), ("USDJPY", 1, 3, 149.800, 3600, 1),
    ("EURUSD", 1, 3, 1.09950, 4500, 1), ("USDJPY", 1, 3, 149.950, 4500, 1),
]


@pytest.mark.parametrize("cut", [0, 3, 5, 10])
def test_restart_from_saved_state_reproduces_the_run(cut):
    """Save after `cut` signals (through JSON), restart, feed every signal again: same book as a straight run."""
    costs = {"EURUSD": EURUSD_COSTS, "USDJPY": JPY_COSTS}
    straight = replay(new_book(costs), SIGNALS)
    saved = json.loads(json.dumps(replay(new_book(costs), SIGNALS[:cut]).to_dict()))
    restarted = replay(PaperBook.from_dict(saved), SIGNALS)  # the replayed prefix is skipped
    assert restarted == straight
    assert restarted.to_dict() == straight.to_dict()


def test_book_trades_sorted_and_unknown_symbol():
    book = replay(new_book({"EURUSD": EURUSD_COSTS, "USDJPY": JPY_COSTS}), SIGNALS)
    times = [t.exit_time for t in book.all_trades()]
    assert times == sorted(times) and len(times) == 4  # EURUSD 3 (1800, 2700, 3600), USDJPY 1 (2700)
    with pytest.raises(KeyError):
        book_on_signal(book, "GBPUSD", 1, 1, 1.3, 900)


def test_account_round_trip():
    account = on_signal(new_account("USDJPY", JPY_COSTS), -1, 2, 150.0, 900).account
    assert PaperAccount.from_dict(json.loads(json.dumps(account.to_dict()))) == account


def test_state_version_checked():
    with pytest.raises(ValueError, match="version"):
        PaperBook.from_dict({"version": 99, "accounts": {}})


def test_metrics_come_from_the_twin():
    signals = [(1, 1, 1.1), (1, 3, 1.1012), (-1, 2, 1.1003), (0, 0, 1.0990), (1, 1, 1.0995), (0, 0, 1.0991)]
    account = new_account("EURUSD", EURUSD_COSTS)
    for i, (d, k, close) in enumerate(signals):
        account = on_signal(account, d, k, close, 900 * (i + 1)).account
    assert len(account.equity_curve) == len(signals) + 1
    assert account.equity_curve[-1] == pytest.approx(account.balance)
    m = account.metrics(bars_per_year("M15"))
    assert m.total_trades == 4
    assert m.total_pnl == pytest.approx(account.balance - 10_000)
    assert m.final_equity == pytest.approx(account.balance)
    assert m.bars == len(signals)


@pytest.mark.parametrize("action,direction,intensity", [(0, 0, 0), (1, 1, 1), (3, 1, 3), (4, -1, 1), (6, -1, 3)])
def test_book_on_action_uses_the_twin_actions(action, direction, intensity):
    book = new_book({"EURUSD": EURUSD_COSTS})
    book, step = book_on_action(book, "EURUSD", action, 1.1, 900, hmm_state=1)
    position = book.accounts["EURUSD"].position
    assert step.applied and (position.direction, position.intensity) == (direction, intensity)


def test_history_appends_without_copying_and_behaves_as_a_value():
    from services.paper.account import History

    base = History((1.0, 2.0))
    a = base.appended(3.0)  # the newest version: shares the storage
    assert a._items is base._items
    b = base.appended(4.0)  # an older version extended: a branch, copied
    assert b._items is not a._items
    assert (tuple(base), tuple(a), tuple(b)) == ((1.0, 2.0), (1.0, 2.0, 3.0), (1.0, 2.0, 4.0))
    c = a.appended(5.0)
    assert tuple(a) == (1.0, 2.0, 3.0) and tuple(c) == (1.0, 2.0, 3.0, 5.0) and len(base) == 2
    assert c[-1] == 5.0 and c[1:] == (2.0, 3.0, 5.0) and c[::2] == (1.0, 3.0) and a[-1] == 3.0
    with pytest.raises(IndexError):
        a[3]  # noqa: B018 (the shared storage holds more; this version does not)
    assert a == (1.0, 2.0, 3.0) and a == History([1.0, 2.0, 3.0]) and a != c and hash(a) == hash((1.0, 2.0, 3.0))
    assert list(History()) == [] and History.of(a) is a


def test_stepping_an_old_account_again_does_not_change_its_successor():
    first = on_signal(new_account("EURUSD", EURUSD_COSTS), 1, 1, 1.1, 900).account
    second = on_signal(first, 0, 0, 1.101, 1800).account
    other = on_signal(first, -1, 2, 1.099, 1800).account  # a branch from the same account
    assert len(second.trades) == len(other.trades) == 1 and second.trades != other.trades
    assert second.equity_curve[:2] == first.equity_curve == other.equity_curve[:2]
    assert second == on_signal(first, 0, 0, 1.101, 1800).account
