"""The paper book on disk (services/paper/store.py) and the running statistics (services/paper/stats.py).

A save appends one commit line with only what changed (one write, one fdatasync); a kill at any point of a save
loads the last whole commit; the file is compacted now and then; the two formats before (one JSON file; a state
file + a journal) load and migrate; a damaged file is refused with its name.
"""

from __future__ import annotations

import dataclasses
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
from services.paper.store import BookStore, StateError, journal_path, log_path, read_book

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


def saved_in_steps(path, signals, cuts, compact_min=store_mod.COMPACT_MIN):
    """Save the book after each cut (as the service does once per batch)."""
    store = BookStore(path, compact_min)
    book = new_book(COSTS)
    store.save(book)
    done = 0
    for cut in cuts:
        book = replay(book, signals[done:cut])
        store.save(book)
        done = cut
    return store, book


def lines_of(path) -> list[bytes]:
    return log_path(path).read_bytes().splitlines()


def test_round_trip_over_many_saves(tmp_path):
    signals = stream(60)
    path = tmp_path / "paper-state.json"
    cuts = [*range(1, len(signals), 7), len(signals)]
    store, _ = saved_in_steps(path, signals, cuts)
    loaded = BookStore(path).load()
    straight = replay(new_book(COSTS), signals)
    assert loaded == straight and loaded.to_dict() == straight.to_dict()  # float for float
    assert log_path(path).name == "paper-state.jsonl" and not path.exists()
    assert json.loads(lines_of(path)[0]) == {"paper_book": 3}
    assert len(lines_of(path)) == 2 + len(cuts)  # the header, the first save's whole book, one line per save
    assert (store.rewrites, store.commits) == (1, len(cuts))
    assert read_book(path) == straight


def test_a_save_appends_one_line_with_only_what_changed(tmp_path):
    signals = stream(50)
    path = tmp_path / "paper-state.json"
    store, book = saved_in_steps(path, signals, range(2, len(signals) + 1, 2))
    before = log_path(path).read_bytes()
    book = replay(book, [s for s in stream(51)[-2:] if s[0] == "USDJPY"])  # one more bar on one account
    assert store.save(book) > 0
    after = log_path(path).read_bytes()
    assert after.startswith(before)
    [line] = after[len(before):].splitlines()
    [(symbol, entry)] = json.loads(line)["c"].items()
    assert symbol == "USDJPY" and len(entry["equity"]) == 1 and len(entry["trades"]) <= 1
    assert "costs" not in entry  # in the account's first commit only
    assert len(line) < 1000  # the history before is not written again
    assert store.save(book) == 0 and log_path(path).read_bytes() == after  # nothing changed: nothing written


@pytest.mark.parametrize("cut", [0, 1, 17, 40, 79])
@pytest.mark.parametrize("dies", ["torn_commit", "garbage_after_power_cut", "in_a_rewrite"])
def test_kill_during_a_save_loads_the_last_commit_and_replay_equals_a_straight_run(tmp_path, cut, dies):
    signals = stream(40)
    path = tmp_path / "paper-state.json"
    store, book = saved_in_steps(path, signals, [cut])
    committed = BookStore(path).load()
    committed_bytes = log_path(path).read_bytes()
    later = replay(book, signals[cut:cut + 9])
    if dies == "torn_commit":  # the kill cut the commit's write in the middle of its line
        line = store_mod.commit_line({"EURUSD": store_mod.account_entry(later.accounts["EURUSD"], 0, 0, True)})
        with open(log_path(path), "ab") as f:
            f.write(line[:len(line) // 2].encode())
    elif dies == "garbage_after_power_cut":  # the file grew, its last pages never written: zeros, then a line
        with open(log_path(path), "ab") as f:
            f.write(b"\0" * 300 + b"\n" + b'{"c":{}}\n')
    else:  # a compaction's whole write killed before its rename: only its temporary file
        with open(str(log_path(path)) + ".tmp", "wb") as f:
            f.write(b'{"paper_book":3}\n{"c":{"EURUSD":')
    restarted = BookStore(path)
    restored = restarted.load()
    assert restored == committed
    assert log_path(path).read_bytes() == committed_bytes  # what is not a whole commit is cut off
    final = replay(restored, signals)  # the whole stream again: the committed prefix is ignored
    restarted.save(final)
    straight = replay(new_book(COSTS), signals)
    assert BookStore(path).load().to_dict() == straight.to_dict()  # float for float


def test_compaction_rewrites_the_file_whole_and_keeps_the_bytes_bounded(tmp_path):
    signals = stream(300)
    path = tmp_path / "paper-state.json"
    store, book = saved_in_steps(path, signals, range(2, len(signals) + 1, 2), compact_min=4096)
    assert store.rewrites > 3
    lines = lines_of(path)
    assert len(lines) < 300  # fewer than one line per save since the last rewrite
    assert BookStore(path).load() == replay(new_book(COSTS), signals)
    appended = sum(len(x) + 1 for x in lines[2:])
    assert appended <= max(4096, sum(len(x) + 1 for x in lines[:2]))
    assert not os.path.exists(str(log_path(path)) + ".tmp")


def write_version_2(path, book) -> None:
    """The files of the format before this one: a state file and a journal of the history."""
    lines, counts = [], {}
    for symbol, account in sorted(book.accounts.items()):
        lines += [json.dumps({"s": symbol, "t": t.to_dict()}) for t in account.trades]
        lines += [json.dumps({"s": symbol, "e": e}) for e in account.equity_curve]
        counts[symbol] = (len(account.trades), len(account.equity_curve))
    blob = "".join(line + "\n" for line in lines).encode()
    journal_path(path).write_bytes(blob + b'{"s":"EURUSD","e":1')  # an uncommitted tail: ignored
    accounts = {}
    for symbol, account in book.accounts.items():
        state = account.to_dict()
        del state["equity_curve"]
        accounts[symbol] = {**state, "trades": counts[symbol][0], "equity_points": counts[symbol][1]}
    path.write_text(json.dumps({"version": 2, "journal_bytes": len(blob), "accounts": accounts}))


@pytest.mark.parametrize("version", [1, 2])
def test_a_file_of_a_format_before_loads_and_migrates(tmp_path, version):
    signals = stream(30)
    path = tmp_path / "paper-state.json"
    old = replay(new_book(COSTS), signals[:25])
    if version == 1:
        path.write_text(json.dumps(old.to_dict()))  # the whole book in one file
    else:
        write_version_2(path, old)
    assert read_book(path) == old
    store = BookStore(path)
    assert store.load() == old and store.legacy
    book = replay(old, signals)
    store.save(book)  # the migration: the whole book into the log, then the old files removed
    assert not path.exists() and not journal_path(path).exists()
    assert BookStore(path).load().to_dict() == replay(new_book(COSTS), signals).to_dict()


def test_a_migration_killed_before_its_write_loads_the_old_files_again_and_one_after_it_the_log(tmp_path):
    path = tmp_path / "paper-state.json"
    old = replay(new_book(COSTS), stream(10))
    write_version_2(path, old)
    store = BookStore(path)
    assert store.load() == old
    with open(str(log_path(path)) + ".tmp", "wb") as f:  # the log's whole write killed before its rename
        f.write(b'{"paper_book":3}\n')
    again = BookStore(path)
    assert again.load() == old and again.legacy
    newer = replay(old, stream(12))
    again.save(newer)
    write_version_2(path, old)  # as if killed after the log's rename, before the old files were removed
    third = BookStore(path)
    assert third.load() == newer and not third.legacy
    assert not path.exists() and not journal_path(path).exists()


def test_damage_is_refused_naming_the_file(tmp_path):
    path = tmp_path / "paper-state.json"
    saved_in_steps(path, stream(10), [20])
    with open(log_path(path), "ab") as f:
        f.write(b'{"c":{"GBPUSD":{"balance":1}}}\n')  # JSON, but no commit this store wrote
    with pytest.raises(StateError, match="paper-state.jsonl line"):
        BookStore(path).load()
    log_path(path).write_bytes(b'{"version":2}\n')
    with pytest.raises(StateError, match="paper-state.jsonl"):
        BookStore(path).load()


def test_a_damaged_version_2_history_is_refused_naming_the_file(tmp_path):
    path = tmp_path / "paper-state.json"
    write_version_2(path, replay(new_book(COSTS), stream(10)))
    size = json.loads(path.read_text())["journal_bytes"]
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
def test_bad_state_file_of_a_format_before_is_refused_naming_it(tmp_path, content, message):
    path = tmp_path / "paper-state.json"
    path.write_text(content)
    with pytest.raises(StateError, match=message) as err:
        BookStore(path).load()
    assert str(path) in str(err.value)


def test_no_state_is_none_and_read_book_never_cuts(tmp_path):
    path = tmp_path / "paper-state.json"
    assert BookStore(path).load() is None and read_book(path) is None
    saved_in_steps(path, stream(5), [10])
    with open(log_path(path), "ab") as f:
        f.write(b"uncommitted\n{\"c\":")
    size = log_path(path).stat().st_size
    assert read_book(path) == replay(new_book(COSTS), stream(5))
    assert log_path(path).stat().st_size == size


def test_a_load_again_in_the_same_process_reads_the_file_again(tmp_path):
    path = tmp_path / "paper-state.json"
    store, book = saved_in_steps(path, stream(8), [16])
    assert store.load() == book
    assert store.load() == book
    more = replay(book, stream(9)[-2:])
    store.save(more)
    assert BookStore(path).load() == more


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
    m = stats.metrics(bpy)  # the figures published each bar: the same floats
    assert stats.headline(bpy) == (m.total_trades, m.total_pnl, m.win_rate, m.profit_factor, m.max_drawdown_pct,
                                   m.sharpe_ratio)


def test_running_stats_of_a_new_account():
    stats = RunningStats.of(new_account("EURUSD", COSTS["EURUSD"]))
    assert stats.metrics(8760).to_dict() == compute_metrics((), (10_000.0,), 8760).to_dict()


def test_an_account_entry_is_its_dict_without_the_history_before():
    account = replay(new_book(COSTS), stream(12)).accounts["USDJPY"]
    assert account.position.direction != 0 or account.trades
    full = account.to_dict()
    full["equity"] = full.pop("equity_curve")
    del full["symbol"]  # the commit's key
    assert store_mod.account_entry(account, 0, 0, with_costs=True) == full
    tail = store_mod.account_entry(account, len(account.trades), len(account.equity_curve) - 1, with_costs=False)
    assert tail["trades"] == [] and tail["equity"] == [account.equity_curve[-1]] and "costs" not in tail


def test_an_entry_written_directly_is_the_json_of_the_entry():
    """The commit line is written scalar by scalar: the same text as json's of the entry map, for every cut of the
    history, with and without the costs, a flat account (None fields), and values json writes its own way."""
    book = replay(new_book(COSTS), stream(40))
    fresh = new_account("EURUSD", COSTS["EURUSD"])
    odd = dataclasses.replace(book.accounts["USDJPY"], balance=float("nan"), last_price=float("-inf"))
    for account in (*book.accounts.values(), fresh, odd):
        for n_trades, n_equity in ((0, 0), (len(account.trades) // 2, len(account.equity_curve) - 1),
                                   (len(account.trades), len(account.equity_curve))):
            for with_costs in (True, False):
                entry = store_mod.account_entry(account, n_trades, n_equity, with_costs)
                assert store_mod.entry_text(account, n_trades, n_equity, with_costs) == json.dumps(
                    entry, separators=(",", ":"))
    entries = {s: store_mod.account_entry(a, 0, 1, False) for s, a in book.accounts.items()}
    texts = {s: store_mod.entry_text(a, 0, 1, False) for s, a in book.accounts.items()}
    assert store_mod.commit_text(texts) == store_mod.commit_line(entries)
    assert json.loads(store_mod.commit_text(texts)) == {"c": entries}


class _Float(float):
    pass


class _Wrapped(float):
    def __repr__(self) -> str:
        return f"Wrapped({float(self)})"


def test_an_entrys_state_of_every_scalar_kind_is_written_as_json_writes_it():
    """The state's scalars written by their repr where that is their JSON (ints, finite floats, None as null), and
    the others as json writes them: a bool, NaN and infinities, a float subclass (its repr or not), tiny, huge and
    negative values, exponents."""
    base = replay(new_book(COSTS), stream(20)).accounts["USDJPY"]
    p = base.position
    cases = [
        {"balance": 10_000}, {"balance": 1e-07}, {"balance": -1.5e+20}, {"balance": -0.0}, {"balance": True},
        {"balance": _Float(2.5)}, {"balance": _Wrapped(2.5)}, {"last_price": float("nan")},
        {"last_price": None, "last_bar_time": None}, {"last_bar_time": 2**63},
        {"position": dataclasses.replace(p, floating_pnl=float("inf"))},
        {"position": dataclasses.replace(p, direction=False, entry_time=None)},
        {"position": dataclasses.replace(p, entry_price=123456789.123456789, floating_pnl=-3.3e-300)},
    ]
    for change in cases:
        account = dataclasses.replace(base, **change)
        for n_trades, n_equity in ((0, 0), (len(account.trades), len(account.equity_curve) - 1),
                                   (len(account.trades), len(account.equity_curve))):
            entry = store_mod.account_entry(account, n_trades, n_equity, False)
            assert store_mod.entry_text(account, n_trades, n_equity, False) == json.dumps(
                entry, separators=(",", ":")), change
