"""The preditor's signal journal (services/preditor/journal.py): what `signals_since` answers, across restarts."""

from __future__ import annotations

import pytest

from common import messages
from services.preditor import journal
from services.preditor.journal import Journal


def sig(t: int, direction: int = 1, catch_up: bool = False) -> messages.Signal:
    return messages.Signal("EURUSD", t, 1.1 + t / 1e6, 1, direction, 1, 0, 0.25, None, catch_up)


def test_lines_round_trip_float_for_float():
    signals = [sig(3600), sig(7200, -1, catch_up=True), sig(10800, 0)]
    assert journal.parse(journal.lines_of(signals)) == signals


def test_a_torn_or_out_of_order_line_ends_the_journal():
    data = journal.lines_of([sig(3600), sig(7200)])
    assert journal.parse(data + b'{"symbol":"EUR') == [sig(3600), sig(7200)]
    assert journal.parse(data + journal.lines_of([sig(7200)])) == [sig(3600), sig(7200)]


@pytest.mark.parametrize(("since", "want"),
                         [(None, [10800]), (3600, [7200, 10800]), (10800, []), (0, [3600, 7200, 10800])])
def test_after(since, want):
    assert [s.bar_time for s in journal.after([sig(3600), sig(7200), sig(10800)], since)] == want


def test_kept_across_a_restart_and_a_replay_is_not_kept_twice(tmp_path):
    path = tmp_path / "preditor" / journal.journal_name("EURUSD", "H1")
    j = Journal(path, fsync=False)
    j.load()
    assert j.kept_from is None
    for t in (3600, 7200):
        j.add(sig(t))
    j.write()
    j.add(sig(10800))  # not written: the process dies before its snapshot
    again = Journal(path, fsync=False)
    again.load()
    assert [s.bar_time for s in again.kept] == [3600, 7200]
    for t in (7200, 10800):  # the restart replays from the snapshot: 7200 is kept already
        again.add(sig(t))
    again.write()
    last = Journal(path, fsync=False)
    last.load()
    assert [s.bar_time for s in last.kept] == [3600, 7200, 10800]
    assert last.kept_from == 3600


def test_a_torn_append_is_cut_at_load(tmp_path):
    path = tmp_path / "j.jsonl"
    path.write_bytes(journal.lines_of([sig(3600)]) + b'{"symbol":"EURUSD","bar_')
    j = Journal(path, fsync=False)
    j.load()
    j.add(sig(7200))
    j.write()
    assert [s.bar_time for s in journal.parse(path.read_bytes())] == [3600, 7200]


def test_the_last_keep_signals_are_kept(tmp_path):
    path = tmp_path / "j.jsonl"
    j = Journal(path, fsync=False, keep=3)
    j.load()
    for t in range(1, 8):
        j.add(sig(t * 3600))
        j.write()
    assert [s.bar_time // 3600 for s in j.kept] == [5, 6, 7]
    assert len(path.read_bytes().splitlines()) <= 6
    again = Journal(path, fsync=False, keep=3)
    again.load()
    assert [s.bar_time // 3600 for s in again.kept] == [5, 6, 7]


def test_a_flat_twin_resets_it(tmp_path):
    path = tmp_path / "j.jsonl"
    j = Journal(path, fsync=False)
    j.load()
    j.add(sig(3600))
    j.write()
    j.reset()
    assert not j.kept and journal.parse(path.read_bytes()) == []


def test_a_reset_that_cannot_be_written_is_written_at_the_next_write(tmp_path):
    path = tmp_path / "j.jsonl"
    j = Journal(path, fsync=False)
    j.load()
    j.add(sig(3600))
    j.write()
    blocker = path.with_name(path.name + ".tmp")
    blocker.mkdir()  # a directory where the temp file goes: the rewrite fails
    with pytest.raises(OSError):
        j.reset()
    blocker.rmdir()
    j.add(sig(7200))
    j.write()
    assert journal.parse(path.read_bytes()) == [sig(7200)]
