"""common/durable.py on real files: the new content or the old one, never a torn file or a temporary left behind."""

import errno
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


# ---- the append-only log (group commit) and the snapshot + journal ----------------------------------------------


def test_a_commit_writes_every_line_added_since_the_last_one_at_once(tmp_path):
    path = tmp_path / "orders.jsonl"
    log = durable.AppendLog(path)
    assert log.commit() == 0 and not path.exists()  # nothing added: nothing written
    log.add('{"a":1}')
    log.add('{"b":2}')
    assert log.pending == 2
    assert log.commit() == len('{"a":1}\n{"b":2}\n')
    log.add('{"c":3}')
    log.commit()
    log.close()
    assert path.read_text() == '{"a":1}\n{"b":2}\n{"c":3}\n'
    assert log.commits == 2 and log.pending == 0
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


def test_a_failed_commit_leaves_the_file_as_it_was_and_the_lines_buffered(tmp_path, monkeypatch):
    path = tmp_path / "orders.jsonl"
    log = durable.AppendLog(path)
    log.add("one")
    log.commit()
    log.add("two")

    def no_space(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fdatasync", no_space)
    with pytest.raises(OSError):
        log.commit()
    assert path.read_text() == "one\n" and log.pending == 1
    monkeypatch.undo()
    log.commit()
    assert path.read_text() == "one\ntwo\n"


def test_a_snapshot_journal_replays_its_changes_and_compacts(tmp_path):
    path = tmp_path / "state.json"
    store = durable.SnapshotJournal(path, compact_after=2)
    assert store.load() == (None, [])
    store.add("c1")
    store.commit()
    assert durable.SnapshotJournal(path).load() == (None, ["c1"])
    store.add("c2")
    assert store.compaction_due
    store.compact("whole")  # the whole document, c1 and c2 in it
    assert not store.compaction_due
    store.add("c3")
    store.commit()
    store.close()
    assert durable.SnapshotJournal(path).load() == ("whole", ["c3"])


def test_a_journal_that_does_not_follow_the_snapshot_is_not_replayed(tmp_path):
    path = tmp_path / "state.json"
    store = durable.SnapshotJournal(path)
    store.load()
    store.add("c1")
    store.commit()
    durable.write_atomic(path, "newer")  # a compaction killed between its two writes: c1 is in the snapshot
    assert durable.SnapshotJournal(path).load() == ("newer", [])


def test_a_snapshot_written_before_journals_existed_is_read_as_it_is(tmp_path):
    path = tmp_path / "state.json"
    path.write_text('{"v": 1}')  # the whole-file format of old, no journal beside it
    store = durable.SnapshotJournal(path)
    assert store.load() == ('{"v": 1}', [])
    store.add("c1")
    store.commit()
    assert durable.SnapshotJournal(path).load() == ('{"v": 1}', ["c1"])
    assert path.read_text() == '{"v": 1}'  # the snapshot itself untouched until a compaction
