"""common/durable.py's group commit on real files: a commit is one journal line with the sections that changed; the
snapshot and the journal read back as the state committed last, whatever a kill left behind (a torn last line, the
entries of a journal whose truncation after a compaction did not happen)."""

import json
import os

import pytest

from common import durable


def lines(path) -> list[dict]:
    with open(durable.journal_path_of(path), "rb") as f:
        return [json.loads(line) for line in f.read().splitlines()]


def reopened(path) -> tuple[dict | None, list[str]]:
    return durable.JournaledState(path).load()


def test_a_commit_appends_the_changed_sections_only_and_reads_back(tmp_path):
    path = tmp_path / "state.json"
    store = durable.JournaledState(path)
    assert store.load() == (None, [])
    store.commit({"a": 1, "big": ["x" * 1000], "c": {"k": [1, 2]}})  # no snapshot yet: the first one is written
    assert json.loads(path.read_text()) == {"a": 1, "big": ["x" * 1000], "c": {"k": [1, 2]}, "journal_seq": 0}
    written = store.commit({"a": 2, "big": ["x" * 1000], "c": {"k": [1, 2]}})
    assert written < 40 and lines(path) == [{"seq": 1, "set": {"a": 2}}]
    assert store.commit({"a": 2, "big": ["x" * 1000], "c": {"k": [1, 2]}}) == 0  # nothing changed: nothing written
    store.commit({"a": 2, "big": [], "c": {"k": [3]}})
    assert lines(path)[1] == {"seq": 2, "set": {"big": [], "c": {"k": [3]}}}
    assert reopened(path) == ({"a": 2, "big": [], "c": {"k": [3]}}, [])
    assert json.loads(path.read_text())["a"] == 1  # the snapshot is not rewritten by a commit


def test_a_torn_last_line_is_dropped_and_cut_off_and_the_next_commit_reads_back(tmp_path):
    path = tmp_path / "state.json"
    store = durable.JournaledState(path)
    store.commit({"a": 0, "b": 0})
    store.commit({"a": 1, "b": 0})
    journal = durable.journal_path_of(path)
    whole = os.path.getsize(journal)
    with open(journal, "ab") as f:
        f.write(b'{"seq":2,"set":{"b":')  # a kill in the middle of the second commit's write
    again = durable.JournaledState(path)
    state, notes = again.load()
    assert state == {"a": 1, "b": 0}
    assert len(notes) == 1 and "not a whole entry" in notes[0]
    assert os.path.getsize(journal) == whole  # cut back: the next line starts on a line of its own
    again.commit({"a": 1, "b": 5})
    assert reopened(path) == ({"a": 1, "b": 5}, [])


def test_zeros_where_the_file_grew_are_a_torn_tail_too(tmp_path):
    path = tmp_path / "state.json"
    store = durable.JournaledState(path)
    store.commit({"a": 0})
    store.commit({"a": 1})
    with open(durable.journal_path_of(path), "ab") as f:
        f.write(b"\x00" * 64 + b"\n")  # a power cut: the size reached the disk, the data did not
    state, notes = reopened(path)
    assert state == {"a": 1} and "not a whole entry" in notes[0]


def test_entries_already_in_the_snapshot_are_not_applied_again(tmp_path):
    """A crash after a compaction's snapshot and before its journal was emptied: the old entries are older."""
    path = tmp_path / "state.json"
    store = durable.JournaledState(path)
    store.commit({"a": 0})
    store.commit({"a": 1})
    store.commit({"a": 2})
    with open(durable.journal_path_of(path), "rb") as f:
        stale = f.read()
    store.commit({"a": 3}, compact=True)
    with open(durable.journal_path_of(path), "wb") as f:
        f.write(stale)  # the truncation did not happen
    assert reopened(path) == ({"a": 3}, [])
    again = durable.JournaledState(path)
    again.load()
    again.commit({"a": 4})  # numbered after the snapshot: applied
    assert reopened(path) == ({"a": 4}, [])


def test_a_file_of_the_format_before_the_journal_is_read_and_compacted_at_the_first_commit(tmp_path):
    path = tmp_path / "state.json"
    path.write_text(json.dumps({"version": 2, "a": [1, 2]}))  # written whole by write_atomic, no journal
    store = durable.JournaledState(path)
    assert store.load() == ({"version": 2, "a": [1, 2]}, []) and store.needs_compaction
    store.commit({"version": 2, "a": [1, 2]})
    assert json.loads(path.read_text()) == {"version": 2, "a": [1, 2], "journal_seq": 0}
    store.commit({"version": 2, "a": [3]})
    assert reopened(path) == ({"version": 2, "a": [3]}, [])


def test_a_rare_section_the_caller_names_or_a_long_journal_makes_a_new_snapshot(tmp_path):
    path = tmp_path / "state.json"
    store = durable.JournaledState(path, compact_bytes=200)
    store.commit({"hot": 0, "rare": 0})
    store.commit({"hot": 1, "rare": 1}, compact_on={"rare"})
    assert json.loads(path.read_text()) == {"hot": 1, "rare": 1, "journal_seq": 0}
    assert not os.path.exists(durable.journal_path_of(path))  # nothing journalled yet
    for n in range(2, 40):
        store.commit({"hot": n, "rare": 1}, compact_on={"rare"})
    assert os.path.getsize(durable.journal_path_of(path)) < 200 + 40  # folded whenever it passed 200 bytes
    assert store.compactions > 2
    assert reopened(path) == ({"hot": 39, "rare": 1}, [])


def test_a_journal_without_its_snapshot_still_gives_its_sections(tmp_path):
    path = tmp_path / "state.json"
    store = durable.JournaledState(path)
    store.commit({"a": 0, "b": 0})
    store.commit({"a": 1, "b": 0})
    path.unlink()
    state, notes = reopened(path)
    assert state == {"a": 1} and "missing" in notes[0]


def test_after_an_unreadable_snapshot_the_new_one_is_numbered_after_the_journal_left_behind(tmp_path):
    path = tmp_path / "state.json"
    store = durable.JournaledState(path)
    store.commit({"a": 0})
    store.commit({"a": 1})
    store.commit({"a": 2})
    with open(durable.journal_path_of(path), "rb") as f:
        left = f.read()
    path.write_text("{not json")
    again = durable.JournaledState(path)
    with pytest.raises(ValueError):
        again.load()
    again.commit({"a": 9})  # the caller starts without the state: a new snapshot
    with open(durable.journal_path_of(path), "wb") as f:
        f.write(left)  # its journal's truncation cut short by a crash
    assert reopened(path) == ({"a": 9}, [])
