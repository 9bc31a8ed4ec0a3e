"""Atomic file writes: a reader (or the next process after a crash) finds the old content or the new one, never a
torn file.

The data goes to `<name>.tmp` beside the file, is flushed and fsynced, renamed over the file, and the directory is
fsynced so the rename itself survives a power cut. A failed write removes the temporary file and leaves the old
content in place.
"""

from __future__ import annotations

import os
from pathlib import Path

Data = bytes | bytearray | memoryview | str


def tmp_path_of(path: str | os.PathLike[str]) -> str:
    """The temporary file a write of `path` goes through (same directory, so the rename stays atomic)."""
    return os.fspath(path) + ".tmp"


def write_atomic(path: str | os.PathLike[str], data: Data, *, mode: int | None = None, fsync: bool = True,
                 sync_dir: bool = True) -> None:
    """Replace the content of `path` by `data` (a str is written as UTF-8), atomically.

    `mode` (such as 0o600 for secrets) is set on the temporary file before any byte is written, so the data is never
    readable under a wider mode. `fsync=False` keeps the atomic rename but skips both fsyncs (a file the next save
    rewrites anyway, where a lost write after a power cut costs nothing); `sync_dir=False` skips the directory's
    (after a power cut the file may then hold its previous content, whole)."""
    final = os.fspath(path)
    tmp = tmp_path_of(final)
    view = memoryview(data.encode("utf-8") if isinstance(data, str) else data)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o666 if mode is None else mode)
    try:
        try:
            if mode is not None:
                os.fchmod(fd, mode)  # the umask narrowed it, or the temporary file existed with another mode
            while view:
                view = view[os.write(fd, view):]
            if fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, final)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if fsync and sync_dir:
        fsync_dir(os.path.dirname(os.path.abspath(final)))


def fsync_dir(directory: str | os.PathLike[str]) -> None:
    """Make a rename or creation inside `directory` durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
