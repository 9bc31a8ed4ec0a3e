"""common/durable.py on real files: the new content or the old one, never a torn file or a temporary left behind;
the append-only log's group commit (one write per commit, a torn tail cut, a failed commit leaving the file as it
was); the snapshot and journal of changed sections reading back as the state committed last, whatever a kill left
behind (a torn last line, the entries of a journal whose emptying after a compaction did not happen)."""

import errno
import json
import os
import stat

import pytest

from common import durable


def test_writes_new_content_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "state.json"
    path.write_text("old")
    durable.write_atomic(path, '{"new": "é"}')
    assert path.read_text(encoding="utf-8") == '{"new": "é"}'
    durable.write_atomic(str(path), b"\x00bytes")
    assert path.read_bytes() == b"\x00bytes"
    assert sorted(os.listdir(tmp_path)) == ["state.json"]


def test_without_fsync_still_replaces(tmp_path):
    path = tmp_path / "sim-state.json"
    durable.write_atomic(path, "a", fsync=False)
    durable.write_atomic(path, "bb", fsync=True, sync_dir=False)
    assert path.read_text() == "bb"
    assert os.listdir(tmp_path) == ["sim-state.json"]


def test_a_failed_write_keeps_the_old_content_and_removes_the_temporary(tmp_path, monkeypatch):
    path = tmp_path / "state.json"
    path.write_text("old")
    real_write = os.write

    def disk_full_after_a_few_bytes(fd: int, data) -> int:
        if os.fstat(fd).st_size >= 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, bytes(data[:3]))

    monkeypatch.setattr(os, "write", disk_full_after_a_few_bytes)  # the standard library's: a full disk
    with pytest.raises(OSError, match="No space"):
        durable.write_atomic(path, "new content, longer than three bytes")
    monkeypatch.undo()
    assert path.read_text() == "old"
    assert os.listdir(tmp_path) == ["state.json"]


def test_a_failed_rename_keeps_the_old_content_and_removes_the_temporary(tmp_path):
    path = tmp_path / "state.json"
    path.mkdir()  # a directory where the file should be: the rename fails
    (path / "inside").write_text("old")
    with pytest.raises(OSError):
        durable.write_atomic(path, "new")
    assert (path / "inside").read_text() == "old"
    assert sorted(os.listdir(tmp_path)) == ["state.json"]


def test_an_unwritable_directory_is_an_error_and_changes_nothing(tmp_path):
    path = tmp_path / "missing" / "state.json"
    with pytest.raises(FileNotFoundError):
        durable.write_atomic(path, "new")
    assert os.listdir(tmp_path) == []


def test_mode_is_honoured_whatever_the_umask_and_a_stale_temporary(tmp_path):
    path = tmp_path / "tokens.json"
    stale = tmp_path / "tokens.json.tmp"
    stale.write_text("leftover of a crash")
    stale.chmod(0o644)
    old_umask = os.umask(0o000)
    try:
        durable.write_atomic(path, "secret", mode=0o600)
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text() == "secret"
    assert os.listdir(tmp_path) == ["tokens.json"]


def test_mode_is_set_before_any_byte_is_written(tmp_path, monkeypatch):
    """A stale world-readable temporary file is narrowed before the secret goes in (seen from each os.write)."""
    path = tmp_path / "key.pem"
    stale = tmp_path / "key.pem.tmp"
    stale.write_text("x")
    stale.chmod(0o666)
    modes: list[int] = []
    real_write = os.write

    def watching_write(fd: int, data) -> int:
        modes.append(stat.S_IMODE(os.fstat(fd).st_mode))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", watching_write)  # the standard library's, watched, not replaced
    durable.write_atomic(path, b"-----BEGIN KEY-----", mode=0o600)
    monkeypatch.undo()
    assert modes and set(modes) == {0o600}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_bytes() == b"-----BEGIN KEY-----"


def test_default_mode_follows_the_umask(tmp_path):
    path = tmp_path / "cert.pem"
    old_umask = os.umask(0o022)
    try:
        durable.write_atomic(path, "cert")
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


# ---- AppendLog: an append-only file of lines, group commit -------------------------------------------------------


def test_a_commit_writes_every_line_added_since_the_last_one_at_once(tmp_path):
    path = tmp_path / "orders.jsonl"
    log = durable.AppendLog(path)
    assert log.commit() == 0 and not path.exists()  # nothing added: nothing written
    log.add('{"a":1}')
    log.add(b'{"b":2}')
    assert log.pending == 2
    assert log.commit() == len('{"a":1}\n{"b":2}\n')
    log.add('{"c":3}')
    log.commit(sync=False)  # in the OS at once, on the disk with the next synced commit
    log.close()
    assert path.read_text() == '{"a":1}\n{"b":2}\n{"c":3}\n'
    assert log.commits == 2 and log.pending == 0 and log.size == path.stat().st_size
    assert durable.AppendLog(path).lines == ['{"a":1}', '{"b":2}', '{"c":3}']


def test_a_torn_last_line_is_cut_off_and_the_next_line_starts_on_its_own(tmp_path):
    path = tmp_path / "orders.jsonl"
    path.write_bytes(b'{"a":1}\n{"b":')  # a commit a crash interrupted
    log = durable.AppendLog(path)
    assert log.lines == ['{"a":1}'] and log.torn
    log.add('{"c":3}')
    log.commit()
    assert path.read_text() == '{"a":1}\n{"c":3}\n'
    assert not durable.AppendLog(path).torn


def test_lines_the_owner_cannot_read_are_cut_off_in_place(tmp_path):
    path = tmp_path / "orders.jsonl"
    path.write_bytes(b'{"a":1}\n' + b"\x00\xff" * 8 + b"\n{\"b\":2}\n")  # a page of zeros, then a later page
    log = durable.AppendLog(path)
    assert len(log.lines) == 3 and not log.torn
    log.cut(1)
    assert path.read_bytes() == b'{"a":1}\n' and log.size == path.stat().st_size
    log.add("next")
    log.commit()
    assert durable.AppendLog(path).lines == ['{"a":1}', "next"]


def test_a_failed_commit_leaves_the_file_as_it_was_and_the_lines_buffered(tmp_path, monkeypatch):
    path = tmp_path / "orders.jsonl"
    log = durable.AppendLog(path)
    log.add("one")
    log.commit()
    log.add("two")

    def no_space(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fdatasync", no_space)  # the standard library's: a full disk
    with pytest.raises(OSError):
        log.commit()
    assert path.read_text() == "one\n" and log.pending == 1
    monkeypatch.undo()
    log.commit()
    assert path.read_text() == "one\ntwo\n"


def test_a_rewrite_replaces_the_content_atomically_and_appends_go_on_after_it(tmp_path):
    path = tmp_path / "twins.jsonl"
    log = durable.AppendLog(path)
    log.add("old")
    log.commit()
    log.add("buffered")
    log.rewrite(["compacted", b"two\nlines"])
    assert path.read_text() == "compacted\ntwo\nlines\n" and sorted(os.listdir(tmp_path)) == ["twins.jsonl"]
    log.commit()  # what was buffered stays buffered
    assert durable.AppendLog(path).lines == ["compacted", "two", "lines", "buffered"]


def test_a_rewrite_of_joined_lines_writes_them_as_they_are_and_refuses_a_torn_last_line(tmp_path):
    path = tmp_path / "twins.jsonl"
    log = durable.AppendLog(path)
    log.add("old")
    log.commit()
    with pytest.raises(ValueError, match="newline"):
        log.rewrite_data(b"compacted\ntorn")
    assert path.read_text() == "old\n"  # refused before anything was written
    log.add("buffered")
    log.rewrite_data(bytearray(b"compacted\ntwo\n"), sync=False)
    assert path.read_text() == "compacted\ntwo\n" and log.size == 14
    log.commit()  # what was buffered stays buffered, appended after the new content
    assert durable.AppendLog(path).lines == ["compacted", "two", "buffered"]
    log.rewrite_data(b"")
    assert path.read_bytes() == b"" and log.size == 0


# ---- JournaledState: a snapshot and a journal of the sections changed ---------------------------------------------


def lines(path) -> list[dict]:
    with open(durable.journal_path_of(path), "rb") as f:
        return [json.loads(line) for line in f.read().splitlines()]


def reopened(path) -> tuple[dict | None, list[str]]:
    return durable.JournaledState(path).load()


def journal_of_commits(path, *values: int) -> tuple[durable.JournaledState, bytes]:
    """A store that committed `{"a": value}` for each of `values`, and its journal's bytes now."""
    store = durable.JournaledState(path)
    for value in values:
        store.commit({"a": value})
    with open(durable.journal_path_of(path), "rb") as f:
        return store, f.read()


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


def test_the_sections_named_changed_are_the_only_ones_encoded_and_a_snapshot_is_written_whole(tmp_path):
    """With `changed`, a section not named is taken as made durable last (the caller tracks its changes); a
    snapshot always encodes every section."""
    path = tmp_path / "state.json"
    store = durable.JournaledState(path, compact_after=2)
    state = {"a": 1, "b": [1]}
    store.commit(state)
    state["a"], state["b"] = 2, [2]
    store.commit(state, changed={"a"})
    assert lines(path) == [{"seq": 1, "set": {"a": 2}}]  # "b" not named: not looked at
    assert store.commit(state, changed=()) == 0
    state["a"] = 3
    store.commit(state, changed={"a"})
    assert reopened(path) == ({"a": 3, "b": [1]}, [])  # a change the caller did not name is not written
    state["a"] = 4
    store.commit(state, changed={"a"})  # the journal is long enough: a new snapshot, every section as it is now
    assert lines(path) == [] and reopened(path) == ({"a": 4, "b": [2]}, [])
    state["a"], state["b"] = 5, [5]
    store.commit(state, changed={"a", "b"})
    assert lines(path) == [{"seq": 3, "set": {"a": 5, "b": [5]}}]
    assert reopened(path) == ({"a": 5, "b": [5]}, [])


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
    store, stale = journal_of_commits(path, 0, 1, 2)
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
    _store, left = journal_of_commits(path, 0, 1, 2)
    path.write_text("{not json")
    again = durable.JournaledState(path)
    with pytest.raises(ValueError):
        again.load()
    again.commit({"a": 9})  # the caller starts without the state: a new snapshot
    with open(durable.journal_path_of(path), "wb") as f:
        f.write(left)  # its journal's truncation cut short by a crash
    assert reopened(path) == ({"a": 9}, [])


def test_a_journal_beside_a_snapshot_of_the_format_before_the_journal_is_ignored(tmp_path):
    """Not written after it (every snapshot this code writes is numbered): say a downgrade wrote the file whole."""
    path = tmp_path / "state.json"
    store = durable.JournaledState(path)
    store.commit({"a": 0})
    store.commit({"a": 1})
    path.write_text(json.dumps({"a": 5}))
    state, notes = reopened(path)
    assert state == {"a": 5} and "ignored" in notes[0]


def test_a_journal_of_so_many_entries_makes_a_new_snapshot(tmp_path):
    path = tmp_path / "state.json"
    store = durable.JournaledState(path, compact_after=2)
    assert store.load() == (None, []) and store.compaction_due  # no snapshot yet: the first commit writes one
    for n in range(4):
        store.commit({"a": n})
    assert store.compactions == 2  # the first commit, then the fourth: two entries in the journal already
    assert json.loads(path.read_text()) == {"a": 3, "journal_seq": 2}
    assert not store.compaction_due and os.path.getsize(durable.journal_path_of(path)) == 0
    store.commit({"a": 4})
    assert reopened(path) == ({"a": 4}, [])


def test_a_commit_that_defers_compaction_appends_past_the_size_and_the_next_one_folds_the_journal(tmp_path):
    """An entry on a latency path (the executor's, written ahead of its orders) is one write and one fdatasync even
    when the journal is full; the next commit without the flag writes the snapshot."""
    path = tmp_path / "state.json"
    store = durable.JournaledState(path, compact_after=2)
    store.commit({"a": 0})  # the first snapshot
    store.commit({"a": 1})
    store.commit({"a": 2})  # two entries: the journal is full
    store.commit({"a": 3}, defer_compaction=True)
    assert store.compactions == 1 and [e["set"] for e in lines(path)] == [{"a": 1}, {"a": 2}, {"a": 3}]
    assert reopened(path) == ({"a": 3}, [])
    store.commit({"a": 3, "b": 1}, defer_compaction=True, compact_on={"b"})  # what else compacts still does
    assert store.compactions == 2 and json.loads(path.read_text()) == {"a": 3, "b": 1, "journal_seq": 3}
    store.commit({"a": 4, "b": 1})
    store.commit({"a": 5, "b": 1})
    store.commit({"a": 6, "b": 1}, defer_compaction=True)
    store.commit({"a": 7, "b": 1})  # no flag: the full journal folded now
    assert store.compactions == 3 and lines(path) == []
    assert json.loads(path.read_text()) == {"a": 7, "b": 1, "journal_seq": 6}
    assert reopened(path) == ({"a": 7, "b": 1}, [])


def test_a_failed_commit_leaves_the_journal_as_it_was_and_the_next_one_writes_the_change(tmp_path, monkeypatch):
    path = tmp_path / "state.json"
    store = durable.JournaledState(path)
    store.commit({"a": 0, "b": 0})
    store.commit({"a": 1, "b": 0})

    def no_space(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fdatasync", no_space)  # the standard library's: a full disk
    with pytest.raises(OSError):
        store.commit({"a": 1, "b": 2})
    monkeypatch.undo()
    assert reopened(path) == ({"a": 1, "b": 0}, [])
    store.commit({"a": 1, "b": 2})
    assert lines(path)[-1] == {"seq": 2, "set": {"b": 2}}
    assert reopened(path) == ({"a": 1, "b": 2}, [])
