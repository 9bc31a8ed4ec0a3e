"""The paper book on disk (services/paper/store.py) and the running statistics (services/paper/stats.py).

A save writes only what changed; a kill at any point of a save loads the last committed book; the old one-file
format loads and migrates; a damaged history is refused with the file named.
"""

from __future__ import annotations

import json
import os
import random

import pytest

from common.timeframes import bars_per_year
from common.twin.metrics import compute_metrics
from common.twin.position import CostModel
from services.paper import store as store_mod
from services.paper.account import new_account, new_book, on_signal, replay
from services.paper.stats import RunningStats
from services.paper.store import BookStore, StateError, journal_path, read_book

COSTS = {"EURUSD": CostModel(), "USDJPY": CostModel(point=0.001, digits=3)}


def stream(n: int, seed: int = 7) -> list[tuple]:
    """n bars of random signals on both symbols, (symbol, direction, intensity, price, bar_time, hmm_state)."""
    rng = random.Random(seed)
    prices = {"EURUSD": 1.1, "USDJPY": 150.0}
    out = []
    for i in range(n):
        for symbol in sorted(prices):
            prices[symbol] *= 1 + rng.gauss(0, 0.002)
            direction = rng.choice((-1, 0, 1))
            intensity = rng.randint(1, 3) if direction else 0
            out.append((symbol, direction, intensity, prices[symbol], 3600 * (i + 1), rng.randint(0, 2)))
    return out


def saved_in_steps(path, signals, cuts):
    """Save the book after each cut (as the service does once per loop pass)."""
    store = BookStore(path)
    book = new_book(COSTS)
    store.save(book)
    done = 0
    for cut in cuts:
        book = replay(book, signals[done:cut])
        store.save(book)
        done = cut
    return store, book


def test_round_trip_over_many_saves(tmp_path):
    signals = stream(60)
    path = tmp_path / "paper-state.json"
    saved_in_steps(path, signals, [*range(1, len(signals), 7), len(signals)])
    loaded = BookStore(path).load()
    straight = replay(new_book(COSTS), signals)
    assert loaded == straight and loaded.to_dict() == straight.to_dict()
    assert json.loads(path.read_text())["version"] == 2
    assert journal_path(path).name == "paper-state.journal.jsonl"


def test_a_save_writes_only_what_changed(tmp_path):
    signals = stream(50)
    path = tmp_path / "paper-state.json"
    store, book = saved_in_steps(path, signals, range(2, len(signals) + 1, 2))
    before_state, before_journal = path.stat().st_size, journal_path(path).stat().st_size
    book = replay(book, stream(51)[-2:])  # one more bar on each account
    store.save(book)
    assert path.stat().st_size < before_state + 200  # the state does not grow with the history
    grown = journal_path(path).stat().st_size - before_journal
    assert 0 < grown < 1000  # two equity points, at most two trades


@pytest.mark.parametrize("cut", [0, 1, 17, 40, 79])
@pytest.mark.parametrize("dies", ["after_journal", "torn_journal"])
def test_kill_during_a_save_loads_the_last_commit_and_replay_equals_a_straight_run(tmp_path, monkeypatch, cut,
                                                                                   dies):
    signals = stream(40)
    path = tmp_path / "paper-state.json"
    store, book = saved_in_steps(path, signals, [cut])
    committed = BookStore(path).load()
    later = replay(book, signals[cut:cut + 9])
    if dies == "after_journal":  # the journal is written and synced, the state never replaced
        def killed(*_a):
            raise KeyboardInterrupt("kill -9")
        monkeypatch.setattr(store_mod.os, "replace", killed)
        with pytest.raises(KeyboardInterrupt):
            store.save(later)
        monkeypatch.undo()
    else:  # the kill tore the journal's append in the middle of a line
        with open(journal_path(path), "ab") as f:
            f.write(b'{"s":"EURUSD","t":{"symbol":"EURU')
    restarted_store = BookStore(path)
    restored = restarted_store.load()
    assert restored == committed
    assert journal_path(path).stat().st_size == restarted_store.journal_bytes  # the uncommitted tail is cut
    final = replay(restored, signals)  # the whole stream again: the committed prefix is ignored
    restarted_store.save(final)
    straight = replay(new_book(COSTS), signals)
    assert BookStore(path).load().to_dict() == straight.to_dict()  # float for float


def test_version_1_file_loads_and_migrates(tmp_path):
    signals = stream(30)
    path = tmp_path / "paper-state.json"
    old = replay(new_book(COSTS), signals[:25])
    path.write_text(json.dumps(old.to_dict()))  # today's format: the whole book in one file
    assert json.loads(path.read_text())["version"] == 1
    store = BookStore(path)
    assert store.load() == old and store.legacy
    book = replay(old, signals)
    store.save(book)  # the migration: the whole history into the journal, the state as version 2
    assert json.loads(path.read_text())["version"] == 2
    assert BookStore(path).load().to_dict() == replay(new_book(COSTS), signals).to_dict()


def test_a_migration_killed_before_its_commit_loads_the_version_1_file_again(tmp_path, monkeypatch):
    path = tmp_path / "paper-state.json"
    old = replay(new_book(COSTS), stream(10))
    path.write_text(json.dumps(old.to_dict()))
    store = BookStore(path)
    store.load()
    monkeypatch.setattr(store_mod.os, "replace", lambda *_a: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        store.save(old)
    monkeypatch.undo()
    assert journal_path(path).stat().st_size > 0
    again = BookStore(path)
    assert again.load() == old
    assert journal_path(path).stat().st_size == 0  # the orphan journal is dropped
    again.save(old)
    assert BookStore(path).load() == old


def test_damaged_history_is_refused_naming_the_file(tmp_path):
    path = tmp_path / "paper-state.json"
    saved_in_steps(path, stream(10), [20])
    size = journal_path(path).stat().st_size
    with open(journal_path(path), "r+b") as f:
        f.truncate(size - 5)
    with pytest.raises(StateError, match="paper-state.journal.jsonl"):
        BookStore(path).load()
    journal_path(path).unlink()
    with pytest.raises(StateError, match="paper-state.journal.jsonl"):
        BookStore(path).load()


@pytest.mark.parametrize("content,message", [
    ('{"version": 99, "accounts": {}}', "version 99"),
    ("{ torn", "unreadable"),
    ('{"version": 2, "accounts": {}}', "unreadable"),
    ('{"version": 1, "accounts": {"EURUSD": {}}}', "version 1"),
])
def test_bad_state_file_is_refused_naming_it(tmp_path, content, message):
    path = tmp_path / "paper-state.json"
    path.write_text(content)
    with pytest.raises(StateError, match=message) as err:
        BookStore(path).load()
    assert str(path) in str(err.value)


def test_no_state_is_none_and_read_book_never_cuts(tmp_path):
    path = tmp_path / "paper-state.json"
    assert BookStore(path).load() is None and read_book(path) is None
    saved_in_steps(path, stream(5), [10])
    with open(journal_path(path), "ab") as f:
        f.write(b"uncommitted\n")
    size = journal_path(path).stat().st_size
    assert read_book(path) == replay(new_book(COSTS), stream(5))
    assert journal_path(path).stat().st_size == size


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_running_stats_equal_the_twin_metrics(seed):
    account = new_account("EURUSD", COSTS["EURUSD"])
    stats = RunningStats.of(account)
    for symbol, direction, intensity, price, bar_time, hmm in stream(300, seed):
        if symbol != "EURUSD":
            continue
        step = on_signal(account, direction, intensity, price, bar_time, hmm)
        account = step.account
        if step.closed:
            stats.add_trades((step.closed,))
        stats.add_equity(account.equity_curve[-1])
    bpy = bars_per_year("H1")
    want = compute_metrics(account.trades, account.equity_curve, bpy).to_dict()
    got = stats.metrics(bpy).to_dict()
    assert want["total_trades"] > 50
    sharpe_want, sharpe_got = want.pop("sharpe_ratio"), got.pop("sharpe_ratio")
    assert got == want  # the same sums in the same order: the same floats
    assert sharpe_got == pytest.approx(sharpe_want, rel=1e-9)  # a running variance
    assert RunningStats.of(account).metrics(bpy).to_dict()["total_pnl"] == want["total_pnl"]


def test_running_stats_of_a_new_account():
    stats = RunningStats.of(new_account("EURUSD", COSTS["EURUSD"]))
    assert stats.metrics(8760).to_dict() == compute_metrics((), (10_000.0,), 8760).to_dict()


def test_state_file_mode_and_no_tmp_left(tmp_path):
    path = tmp_path / "paper-state.json"
    saved_in_steps(path, stream(3), [6])
    assert not os.path.exists(str(path) + ".tmp")


def test_the_state_of_an_account_is_its_dict_without_the_history():
    account = replay(new_book(COSTS), stream(12)).accounts["USDJPY"]
    assert account.position.direction != 0 or account.trades
    full = account.to_dict()
    del full["equity_curve"]
    state = store_mod._state_of(account, len(account.trades), len(account.equity_curve))
    assert {**full, "trades": len(account.trades), "equity_points": len(account.equity_curve)} == state
