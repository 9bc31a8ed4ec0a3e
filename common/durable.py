"""Atomic file writes: a reader (or the next process after a crash) finds the old content or the new one, never a
torn file.

The data goes to `<name>.tmp` beside the file, is flushed and fsynced, renamed over the file, and the directory is
fsynced so the rename itself survives a power cut. A failed write removes the temporary file and leaves the old
content in place.

Group commit (`JournaledState`, `Journal`): a state changed many times a second (a batch of messages at a time) is
not rewritten whole at each change: each commit appends the sections that changed to a journal with one write and
one fdatasync, and the journal is folded into an atomic snapshot now and then.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path
from typing import Any

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


# ---- group commit: a JSON object kept as a snapshot and an append-only journal of its changes ------------------

SEQ_KEY = "journal_seq"  # in a snapshot: the last journal entry it includes


def journal_path_of(path: str | os.PathLike[str]) -> str:
    """The journal beside a snapshot file."""
    return os.fspath(path) + ".journal"


class Journal:
    """An append-only file of JSON lines, one line per commit: one `write` and, when asked, one `fdatasync` make it
    durable (a line is never rewritten). A kill or a power cut can leave only the last line torn (cut short, or
    zeros where the file grew); `read` drops it and cuts the file back to the last whole line, so the next line
    starts on a line of its own."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = os.fspath(path)
        self.size = 0  # bytes in the file (after `read`, or as appended)
        self._fd: int | None = None

    def read(self) -> tuple[list[dict], str]:
        """The entries written whole, in order, and a note on what was cut off ('' when nothing was)."""
        try:
            data = Path(self.path).read_bytes()
        except FileNotFoundError:
            self.size = 0
            return [], ""
        entries: list[dict] = []
        good = 0
        while good < len(data):
            end = data.find(b"\n", good)
            if end < 0:
                break  # no newline: the last write was cut short
            try:
                entry = json.loads(data[good:end])
            except ValueError:
                break
            if not isinstance(entry, dict):
                break
            entries.append(entry)
            good = end + 1
        note = ""
        if good < len(data):
            note = (f"journal {self.path}: {len(data) - good} bytes after entry {len(entries)} are not a whole "
                    "entry (a write cut short): dropped")
            self._cut(good)
        self.size = good
        return entries, note

    def append(self, line: bytes, *, sync: bool = True) -> None:
        """One entry (`line`: one JSON object and its newline) at the end of the file, durable when `sync`."""
        fd = self._open()
        view = memoryview(line)
        try:
            while view:
                view = view[os.write(fd, view):]
        except BaseException:
            os.ftruncate(fd, self.size)  # no part of a line left for the next one to be glued to
            raise
        if sync:
            os.fdatasync(fd)
        self.size += len(line)

    def reset(self) -> None:
        """Empty the file (its entries are in a snapshot now). Not synced: the snapshot's sequence number tells the
        entries it holds from later ones, should the old entries come back after a power cut."""
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
        elif os.path.exists(self.path):
            self._cut(0)
        self.size = 0

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _open(self) -> int:
        if self._fd is None:
            created = not os.path.exists(self.path)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o666)
            if created:
                fsync_dir(os.path.dirname(os.path.abspath(self.path)))
        return self._fd

    def _cut(self, size: int) -> None:
        fd = os.open(self.path, os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.ftruncate(fd, size)
            os.fsync(fd)
        finally:
            os.close(fd)


class JournaledState:
    """A JSON object of named sections made durable by group commit: a snapshot file (the whole object, written
    with `write_atomic`) and, beside it, a journal (`<path>.journal`) with one line per commit holding the sections
    that changed since the previous one (`{"seq": n, "set": {section: value}}`). A commit is one write and one
    fdatasync of the changed sections only, however big the rest; the journal is folded into a new snapshot
    (compaction) when it grows past `compact_bytes`, when the caller asks, or when a section named in
    `commit(..., compact_on=...)` changed.

    Reading: the snapshot, then the journal's entries after the snapshot's `journal_seq` (older ones were written
    before a compaction whose truncation a crash cut short), section by section; a torn last entry is dropped. A
    snapshot without `journal_seq` is a file of the format before the journal: read as it is; the caller's first
    commit compacts it (`needs_compaction`)."""

    def __init__(self, path: str | os.PathLike[str], *, compact_bytes: int = 256 * 1024):
        self.path = os.fspath(path)
        self.journal = Journal(journal_path_of(path))
        self.compact_bytes = compact_bytes
        self.needs_compaction = True  # no snapshot of this format yet
        self.commits = 0  # journal entries written, compactions apart (for counters)
        self.compactions = 0
        self.bytes_written = 0
        self._seq = 0
        self._texts: dict[str, str] = {}  # section -> its JSON as last made durable

    def load(self) -> tuple[dict[str, Any] | None, list[str]]:
        """The object (None: no snapshot and no journal) and notes for the log. A snapshot that cannot be read
        raises (OSError, ValueError) as reading a file does."""
        entries, torn = self.journal.read()
        # numbered after every entry on disk, even when the snapshot cannot be read: the next snapshot must not be
        # older than the entries a cut-short truncation could leave
        self._seq = max([e["seq"] for e in entries if isinstance(e.get("seq"), int)], default=0)
        try:
            with open(self.path, "rb") as f:
                snapshot = json.loads(f.read())
        except FileNotFoundError:
            snapshot = None
        notes = [torn] if torn else []
        if snapshot is not None and not isinstance(snapshot, dict):
            return snapshot, notes  # the caller names what it is
        state = dict(snapshot or {})
        base = state.pop(SEQ_KEY, None)
        self.needs_compaction = not isinstance(base, int) or isinstance(base, bool)
        seq = base if not self.needs_compaction else 0
        for entry in entries:
            n, changes = entry.get("seq"), entry.get("set")
            if not isinstance(n, int) or not isinstance(changes, dict):
                notes.append(f"journal {self.journal.path}: entry {entry!r:.200} is not a commit: skipped")
                continue
            if n <= seq:
                continue  # already in the snapshot
            state.update(changes)
            seq = n
        if snapshot is None and not entries:
            return None, notes
        if snapshot is None:
            notes.append(f"{self.path} missing: the state is rebuilt from its journal alone")
            self.needs_compaction = True
        self._seq = max(self._seq, seq)
        self._texts = {k: _dumps(v) for k, v in state.items()}
        return state, notes

    def commit(self, state: dict[str, Any], *, sync: bool = True, compact: bool = False,
               compact_on: frozenset[str] | set[str] = frozenset()) -> int:
        """Make `state` durable: the sections that changed since the last commit, as one journal entry (durable
        on return when `sync`), or the whole object as a new snapshot (always durable). Returns the bytes written
        (0: nothing changed)."""
        texts = {k: _dumps(v) for k, v in state.items()}
        changed = [k for k, t in texts.items() if self._texts.get(k) != t]
        if (compact or self.needs_compaction or set(self._texts) - set(texts)
                or self.journal.size >= self.compact_bytes or any(k in compact_on for k in changed)):
            return self._compact(texts)
        if not changed:
            return 0
        self._seq += 1
        body = ",".join(f"{json.dumps(k)}:{texts[k]}" for k in changed)
        line = f'{{"seq":{self._seq},"set":{{{body}}}}}\n'.encode()
        self.journal.append(line, sync=sync)
        self._texts.update((k, texts[k]) for k in changed)
        self.commits += 1
        self.bytes_written += len(line)
        return len(line)

    def close(self) -> None:
        self.journal.close()

    def _compact(self, texts: dict[str, str]) -> int:
        body = ",".join(f"{json.dumps(k)}:{t}" for k, t in [*texts.items(), (SEQ_KEY, str(self._seq))])
        data = f"{{{body}}}".encode()
        write_atomic(self.path, data)
        self.journal.reset()
        self._texts = texts
        self.needs_compaction = False
        self.compactions += 1
        self.bytes_written += len(data)
        return len(data)


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


class AppendLog:
    """An append-only file of text lines made durable in groups (group commit): `add` buffers a line, `commit` writes
    every buffered line with one write and one fdatasync. A line is durable once the `commit` that wrote it returned.

    Opening it reads the complete lines (`lines`) and cuts a torn tail off (a last line without its newline: a write
    a crash interrupted, never committed), so the next line appended starts on a line of its own. `rewrite` replaces
    the whole content atomically (compaction; `write_atomic`), the next commits appending to the new file."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self.lines, self.torn = read_lines(self.path)
        self._pending: list[str] = []
        self._fd = -1
        self.commits = 0  # how many commits wrote something (one fdatasync each)
        self.bytes_written = 0

    @property
    def pending(self) -> int:
        """Lines added and not committed yet."""
        return len(self._pending)

    def add(self, line: str) -> None:
        """Buffer `line` (one line, without its newline) for the next `commit`."""
        self._pending.append(line)

    def commit(self) -> int:
        """Write the buffered lines (one write, one fdatasync); returns the bytes written. A failure leaves them
        buffered and the file as it was (what a failed attempt wrote is cut off)."""
        if not self._pending:
            return 0
        data = ("\n".join(self._pending) + "\n").encode("utf-8")
        fd = self._open()
        start = os.lseek(fd, 0, os.SEEK_END)
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(fd, view):]
            os.fdatasync(fd)
        except BaseException:
            with contextlib.suppress(OSError):  # no half-written line left for the next commit to continue
                os.ftruncate(fd, start)
            raise
        self._pending.clear()
        self.commits += 1
        self.bytes_written += len(data)
        return len(data)

    def drop_pending(self) -> None:
        self._pending.clear()

    def rewrite(self, lines: list[str]) -> None:
        """Replace the whole content by `lines` atomically (what is buffered stays buffered)."""
        self.close()
        write_atomic(self.path, "".join(line + "\n" for line in lines))

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


def read_lines(path: str | os.PathLike[str]) -> tuple[list[str], bool]:
    """The complete lines of an append-only file (no file: none) and whether a torn last line was cut off the file
    (a write without its newline: never committed, so never acknowledged)."""
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
    return data[:end].decode("utf-8", errors="replace").splitlines(), torn


class SnapshotJournal:
    """A document kept as a snapshot (`path`, rewritten by `write_atomic`) and an append-only journal of the changes
    made since that snapshot (`<path>.journal.jsonl`, an `AppendLog`): a change costs one appended line, a batch of
    changes one write and one fdatasync (`add`, then `commit`), and every `compact_after` lines the whole document
    is written as the new snapshot and the journal starts again (`compact`).

    The journal's first line names the snapshot it follows (a digest of its bytes): a journal that does not follow
    the snapshot on disk (a crash between a compaction's two writes: the new snapshot holds all its lines; or a
    snapshot written before there were journals, the format of old) is stale, and `load` starts a new one. The
    changes' lines are the owner's (one text line each); applying them in order onto the snapshot gives the
    document."""

    def __init__(self, path: str | os.PathLike[str], compact_after: int = 1000) -> None:
        self.path = os.fspath(path)
        self.journal_path = self.path + ".journal.jsonl"
        self.compact_after = compact_after
        self._log: AppendLog | None = None
        self._since_snapshot = 0  # change lines in the journal (committed or not)

    def load(self) -> tuple[str | None, list[str]]:
        """The snapshot's text (None: no snapshot) and the change lines that follow it, in order."""
        try:
            with open(self.path, "rb") as f:
                snapshot: bytes | None = f.read()
        except FileNotFoundError:
            snapshot = None
        log = self._log = AppendLog(self.journal_path)
        lines = log.lines
        header = _journal_header(snapshot)
        if lines and lines[0] == header:
            changes = lines[1:]
        else:
            changes = []
            log.rewrite([header])
        log.lines = []
        self._since_snapshot = len(changes)
        return (None if snapshot is None else snapshot.decode("utf-8")), changes

    @property
    def torn(self) -> bool:
        """A torn last change line was cut off at `load` (a commit a crash interrupted)."""
        return self._log is not None and self._log.torn

    @property
    def compaction_due(self) -> bool:
        return self._since_snapshot >= self.compact_after

    def add(self, line: str) -> None:
        assert self._log is not None, "load first"
        self._log.add(line)
        self._since_snapshot += 1

    def commit(self) -> int:
        """Make the changes added durable (one write, one fdatasync); the bytes written."""
        return self._log.commit() if self._log is not None else 0

    def compact(self, snapshot: str) -> None:
        """`snapshot` (the whole document, every change added included) becomes the snapshot; the journal restarts
        empty after it (changes added and not committed are in the snapshot: dropped)."""
        assert self._log is not None, "load first"
        data = snapshot.encode("utf-8")
        write_atomic(self.path, data)
        self._log.drop_pending()
        self._log.rewrite([_journal_header(data)])
        self._since_snapshot = 0

    def close(self) -> None:
        if self._log is not None:
            self._log.close()


def _journal_header(snapshot: bytes | None) -> str:
    digest = "none" if snapshot is None else hashlib.sha256(snapshot).hexdigest()[:32]
    return json.dumps({"follows_snapshot": digest})
