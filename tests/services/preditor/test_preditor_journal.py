"""The preditor's signal journal (services/preditor/journal.py): what `signals_since` answers, across restarts."""

from __future__ import annotations

import pytest

from common import messages
from services.preditor import journal, store
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


def test_a_replay_is_not_kept_twice_and_a_reset_forgets():
    j = Journal([sig(3600)])
    for t in (3600, 7200):  # a restart replays from the snapshot: 3600 is kept already
        j.add(sig(t))
    assert [s.bar_time for s in j.kept] == [3600, 7200] and j.unwritten == [sig(7200)] and j.written
    assert j.kept_from == 3600
    j.reset()
    assert not j.kept and not j.unwritten and not j.written and j.kept_from is None


def test_the_last_keep_signals_are_kept():
    j = Journal(keep=3)
    for t in range(1, 8):
        j.add(sig(t * 3600))
    assert [s.bar_time // 3600 for s in j.kept] == [5, 6, 7]


def test_each_line_is_encoded_once_and_kept_in_step_with_its_signal():
    encoded: list[int] = []

    def line(s: messages.Signal) -> bytes:
        encoded.append(s.bar_time)
        return store.signal_line("EURUSD_H1", s)

    read = [sig(3600), sig(7200)]
    j = Journal(read, keep=3, line=line, lines=[store.signal_line("EURUSD_H1", read[1])])  # the last one's line read
    for t in (10800, 14400):
        j.add(sig(t * 1))
    assert j.new_lines() == store.signal_lines("EURUSD_H1", [sig(10800), sig(14400)])
    assert j.all_lines() == store.signal_lines("EURUSD_H1", list(j.kept))  # 7200's line as read, 3600 dropped
    assert encoded == [10800, 14400]
    j.now_written()
    assert j.new_lines() == b"" and j.unwritten == [] and j.written
    j.reset()
    j.add(sig(18000))
    assert j.all_lines() == store.signal_lines("EURUSD_H1", [sig(18000)])
    no_lines = Journal(read, line=line)  # lines not read (a legacy journal): encoded when the file needs them all
    assert no_lines.all_lines() == store.signal_lines("EURUSD_H1", read) and encoded[-2:] == [3600, 7200]
