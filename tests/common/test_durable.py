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
