"""Atomic file writes: a reader (or the next process after a crash) finds the old content or the new one, never a
torn file.

The data goes to `<name>.tmp` beside the file, is flushed and fsynced, renamed over the file, and the directory is
fsynced so the rename itself survives a power cut. A failed write removes the temporary file and leaves the old
content in place.

Group commit: `AppendLog` is an append-only file of lines made durable a batch at a time (one write and one
fdatasync per commit, a torn tail cut at open, an atomic rewrite for compaction); `JournaledState` keeps a state
changed many times a second (a batch of messages at a time) as a snapshot and an `AppendLog` of the sections that
changed, folded into a new snapshot now and then, instead of rewriting the whole state at each change.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

from common import plain_json, trace

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
                _synced(os.fsync, fd, final)
        finally:
            os.close(fd)
        os.replace(tmp, final)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if fsync and sync_dir:
        fsync_dir(os.path.dirname(os.path.abspath(final)))


def _synced(sync: Any, fd: int, path: str) -> None:
    """``sync(fd)``; timed for the pipeline bench's trace (common/trace.py) when it is on."""
    if not trace.ON:
        sync(fd)
        return
    t0 = time.monotonic()
    sync(fd)
    trace.mark("fdatasync", f"{(time.monotonic() - t0) * 1000:.2f}ms {os.path.basename(path)}")


def fsync_dir(directory: str | os.PathLike[str]) -> None:
    """Make a rename or creation inside `directory` durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# ---- group commit: an append-only file of lines -------------------------------------------------------------------

Line = str | bytes  # one line (or several joined by newlines), without its final newline


class AppendLog:
    """An append-only file of text lines made durable in groups (group commit): `add` buffers a line, `commit` writes
    every buffered line with one write and (unless `sync=False`) one fdatasync. A line is durable once the `commit`
    that wrote it returned; a line is never rewritten in place.

    Opening it reads the complete lines (`lines`) and cuts a torn tail off (a last line without its newline: a write
    a crash interrupted, never committed), so the next line appended starts on a line of its own; `cut` drops lines
    its owner cannot read (zeros where the file grew after a power cut). `rewrite` replaces the whole content
    atomically (compaction; `write_atomic`), the next commits appending to the new file."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self.lines, self.torn = _read_lines(self.path)
        self.size = sum(len(_encode(line)) + 1 for line in self.lines)  # bytes in the file
        self._pending: list[bytes] = []
        self._fd = -1
        self.commits = 0  # how many commits wrote something (one fdatasync each when synced)
        self.bytes_written = 0

    @property
    def pending(self) -> int:
        """Lines added and not committed yet."""
        return len(self._pending)

    def add(self, line: Line) -> None:
        """Buffer `line` (without its newline) for the next `commit`."""
        self._pending.append(_encode(line) + b"\n")

    def commit(self, *, sync: bool = True) -> int:
        """Write the buffered lines (one write, one fdatasync when `sync`: else in the OS at once, so a kill loses
        nothing, and on the disk with the next synced commit); returns the bytes written. A failure leaves them
        buffered and the file as it was (what a failed attempt wrote is cut off)."""
        if not self._pending:
            return 0
        data = b"".join(self._pending)
        fd = self._open()
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(fd, view):]
            if sync:
                _synced(os.fdatasync, fd, self.path)
        except BaseException:
            with contextlib.suppress(OSError):  # no half-written line left for the next commit to continue
                os.ftruncate(fd, self.size)
            raise
        self._pending.clear()
        self.size += len(data)
        self.commits += 1
        self.bytes_written += len(data)
        return len(data)

    def sync(self) -> None:
        """Make what the commits with ``sync=False`` wrote durable (one fdatasync; nothing when no file is open)."""
        if self._fd >= 0:
            _synced(os.fdatasync, self._fd, self.path)

    def drop_pending(self) -> None:
        self._pending.clear()

    def cut(self, keep: int) -> None:
        """Keep the first `keep` lines read at open, cut the rest off the file, in place (lines its owner cannot
        read: after a torn write nothing can be trusted; `cut(0)`: empty it). What is buffered stays buffered."""
        self.size = sum(len(_encode(line)) + 1 for line in self.lines[:keep])
        del self.lines[keep:]
        if self._fd < 0 and not os.path.exists(self.path):
            return
        fd = os.open(self.path, os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.ftruncate(fd, self.size)
            os.fsync(fd)
        finally:
            os.close(fd)

    def rewrite(self, lines: Sequence[Line], *, sync: bool = True) -> None:
        """Replace the whole content by `lines` atomically (what is buffered stays buffered); `sync=False` as
        `write_atomic`'s `fsync=False`."""
        parts: list[bytes] = []
        for line in lines:
            parts += (_encode(line), b"\n")
        self.rewrite_data(b"".join(parts), sync=sync)  # one copy of the lines: no line + newline made first

    def rewrite_data(self, data: bytes | bytearray | memoryview, *, sync: bool = True) -> None:
        """`rewrite` of lines already joined: `data` is empty or whole lines (ending with a newline), written as it
        is, without a copy (ValueError otherwise: a torn last line would be cut at the next open)."""
        view = memoryview(data)
        if view.nbytes and view[-1:].tobytes() != b"\n":
            raise ValueError(f"{self.path}: a rewrite's data must end with a newline (whole lines)")
        self.close()
        write_atomic(self.path, view, fsync=sync)
        self.size = view.nbytes
        self.bytes_written += view.nbytes

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def _open(self) -> int:
        if self._fd < 0:
            created = not os.path.exists(self.path)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o666)
            if created:
                fsync_dir(os.path.dirname(os.path.abspath(self.path)))
        return self._fd


def _encode(line: Line) -> bytes:
    return line if isinstance(line, bytes) else line.encode("utf-8", "surrogateescape")


def _read_lines(path: str) -> tuple[list[str], bool]:
    """The complete lines of an append-only file (no file: none) and whether a torn last line was cut off the file
    (a write without its newline: never committed, so never acknowledged). Bytes that are not UTF-8 are kept as
    they are (surrogate escapes), so the lines' sizes are the file's."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return [], False
    end = data.rfind(b"\n") + 1
    torn = end < len(data)
    if torn:
        with open(path, "r+b") as f:
            f.truncate(end)
            f.flush()
            os.fsync(f.fileno())
    return data[:end - 1].decode("utf-8", "surrogateescape").split("\n") if end else [], torn


# ---- group commit: a JSON object kept as a snapshot and an append-only journal of its changes ------------------

SEQ_KEY = "journal_seq"  # in a snapshot: the last journal entry it includes


def journal_path_of(path: str | os.PathLike[str]) -> str:
    """The journal beside a snapshot file."""
    return os.fspath(path) + ".journal"


class JournaledState:
    """A JSON object of named sections made durable by group commit: a snapshot file (the whole object and
    `journal_seq`, written with `write_atomic`) and, beside it, a journal (`<path>.journal`, an `AppendLog`) with one
    line per commit holding the sections that changed since the previous one (`{"seq": n, "set": {section:
    value}}`). A commit is one write and one fdatasync of the changed sections only, however big the rest; the
    journal is folded into a new snapshot (compaction) when it holds `compact_bytes` or `compact_after` entries,
    when the caller asks, or when a section named in `commit(..., compact_on=...)` changed.

    Reading: the snapshot, then the journal's entries after the snapshot's `journal_seq` (older ones were written
    before a compaction whose rewrite of the journal a crash cut short), section by section; a torn last entry is
    dropped and cut off. A snapshot without `journal_seq` is a file of the format before the journal: read as it is,
    a journal beside it ignored (not written after it: this class numbers every snapshot it writes), and the
    caller's first commit compacts it (`needs_compaction`). A snapshot that cannot be read raises; the next commit
    writes a new one, numbered after every entry the journal holds, so they are not applied to it."""

    def __init__(self, path: str | os.PathLike[str], *, compact_bytes: int = 256 * 1024,
                 compact_after: int | None = None):
        self.path = os.fspath(path)
        self.journal_path = journal_path_of(path)
        self.journal: AppendLog | None = None
        self.compact_bytes = compact_bytes
        self.compact_after = compact_after
        self.needs_compaction = True  # no snapshot of this format yet
        self.commits = 0  # journal entries written, compactions apart (for counters)
        self.compactions = 0
        self.bytes_written = 0
        self._seq = 0
        self._entries = 0  # in the journal after the snapshot
        self._texts: dict[str, str] = {}  # section -> its JSON as last made durable

    def load(self) -> tuple[dict[str, Any] | None, list[str]]:
        """The object (None: no snapshot and no journal) and notes for the log. A snapshot that cannot be read
        raises (OSError, ValueError) as reading a file does."""
        entries, notes = self._read_journal()
        try:
            with open(self.path, "rb") as f:
                snapshot = json.loads(f.read())
        except FileNotFoundError:
            snapshot = None
        if snapshot is not None and not isinstance(snapshot, dict):
            return snapshot, notes  # the caller names what it is
        state = dict(snapshot or {})
        base = state.pop(SEQ_KEY, None)
        self.needs_compaction = not isinstance(base, int) or isinstance(base, bool)
        if snapshot is not None and self.needs_compaction and entries:
            notes.append(f"journal {self.journal_path}: {len(entries)} entries beside a snapshot of the format "
                         "before the journal (not written after it): ignored")
            entries = []
        seq = base if not self.needs_compaction else 0
        self._entries = 0
        for entry in entries:
            n, changes = entry.get("seq"), entry.get("set")
            if not isinstance(n, int) or not isinstance(changes, dict):
                notes.append(f"journal {self.journal_path}: entry {entry!r:.200} is not a commit: skipped")
                continue
            if n <= seq:
                continue  # already in the snapshot
            state.update(changes)
            seq = n
            self._entries += 1
        if snapshot is None and not entries:
            return None, notes
        if snapshot is None:
            notes.append(f"{self.path} missing: the state is rebuilt from its journal alone")
            self.needs_compaction = True
        self._seq = max(self._seq, seq)
        self._texts = {k: _dumps(v) for k, v in state.items()}
        return state, notes

    @property
    def compaction_due(self) -> bool:
        return self.needs_compaction or self._journal_full()

    def _journal_full(self) -> bool:
        return (self._log().size >= self.compact_bytes
                or (self.compact_after is not None and self._entries >= self.compact_after))

    def commit(self, state: dict[str, Any], *, sync: bool = True, compact: bool = False,
               compact_on: frozenset[str] | set[str] = frozenset(),
               changed: Collection[str] | None = None, defer_compaction: bool = False) -> int:
        """Make `state` durable: the sections that changed since the last commit, as one journal entry (durable
        on return when `sync`; else in the OS at once and on the disk with the next synced commit), or the whole
        object as a new snapshot (always durable). Returns the bytes written (0: nothing changed).

        `changed`: the sections the caller may have changed since its last commit (it tracks them); only those are
        encoded and compared, every other one is taken as it was last made durable (None: all are compared).
        `defer_compaction`: a journal past its size (or entry count) is not folded by this commit but by the next
        one without it (a commit on a latency path: a snapshot costs three fsyncs where an entry costs one); what
        else compacts (`compact`, `compact_on`, a file of the old format, a section removed) still does."""
        texts = self._texts_of(state, changed)
        changed = [k for k, t in texts.items() if self._texts.get(k) != t]
        if (compact or self.needs_compaction or (not defer_compaction and self._journal_full())
                or set(self._texts) - set(texts) or (changed and any(k in compact_on for k in changed))):
            return self._compact({k: _dumps(v) for k, v in state.items()})  # a snapshot is written whole
        if not changed:
            return 0
        self._seq += 1
        body = ",".join(f"{json.dumps(k)}:{texts[k]}" for k in changed)
        journal = self._log()
        journal.add(f'{{"seq":{self._seq},"set":{{{body}}}}}')
        try:
            written = journal.commit(sync=sync)
        except BaseException:
            journal.drop_pending()
            self._seq -= 1
            raise
        self._texts.update((k, texts[k]) for k in changed)
        self._entries += 1
        self.commits += 1
        self.bytes_written += written
        return written

    def _texts_of(self, state: dict[str, Any], changed: Collection[str] | None) -> dict[str, str]:
        """Every section's JSON: encoded anew when it may have changed, else the one made durable last."""
        if changed is None:
            return {k: _dumps(v) for k, v in state.items()}
        known = self._texts
        return {k: known[k] if k in known and k not in changed else _dumps(v) for k, v in state.items()}

    def close(self) -> None:
        if self.journal is not None:
            self.journal.close()

    def _read_journal(self) -> tuple[list[dict], list[str]]:
        """The journal's entries up to the first that is not a whole one (cut off the file with what follows)."""
        self.close()
        journal = self.journal = AppendLog(self.journal_path)
        entries: list[dict] = []
        for line in journal.lines:
            try:
                entry = json.loads(line)
            except ValueError:
                break
            if not isinstance(entry, dict):
                break
            entries.append(entry)
        notes = []
        if journal.torn or len(entries) < len(journal.lines):
            notes.append(f"journal {self.journal_path}: what follows entry {len(entries)} is not a whole entry "
                         "(a write cut short): dropped")
            if len(entries) < len(journal.lines):
                journal.cut(len(entries))
        journal.lines = []
        # numbered after every entry on disk, even when the snapshot cannot be read (or was not): the next snapshot
        # must not be older than the entries a cut-short emptying of the journal could leave
        self._seq = max((e["seq"] for e in entries if isinstance(e.get("seq"), int)), default=0)
        return entries, notes

    def _log(self) -> AppendLog:
        if self.journal is None:
            self._read_journal()  # committed without a load: the journal's tail is cut all the same
        assert self.journal is not None
        return self.journal

    def _compact(self, texts: dict[str, str]) -> int:
        body = ",".join(f"{json.dumps(k)}:{t}" for k, t in [*texts.items(), (SEQ_KEY, str(self._seq))])
        data = f"{{{body}}}".encode()
        write_atomic(self.path, data)
        # emptied in place, not replaced: a rename the disk has not got yet could bring the old file back over
        # the entries appended after it; the old entries coming back are harmless (numbered up to the snapshot's)
        self._log().cut(0)
        self._texts = texts
        self._entries = 0
        self.needs_compaction = False
        self.compactions += 1
        self.bytes_written += len(data)
        return len(data)


def _dumps(value: Any) -> str:
    """A section's JSON text (plain_json: orjson for plain values, else the json module, compact)."""
    return plain_json.dumps(value).decode()
