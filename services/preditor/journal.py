"""One model's recent signals, kept so that paper can ask what it missed while it was down (``signals_since``).

A JSON-lines file beside the twin snapshot (``<SYM>_<TF>.signals.jsonl``), appended with the signals of the bars
stepped since the last write, always before the snapshot that covers them: a crash in between replays those bars
from the previous snapshot, and the same signals (the same bars, the same twin) are not appended twice (a signal
is appended only after the last one kept). A torn last line (a crash mid-append) is dropped on read. The last
``KEEP`` signals are kept; the file is rewritten with them (atomically) once it holds twice as many.

The pure part (``lines_of``, ``parse``, ``after``) takes and returns values; ``Journal`` holds the file.
"""

from __future__ import annotations

import collections
import json
import os
from pathlib import Path

from common import durable, messages

KEEP = 5000  # signals kept per model: about 7 months of H1 bars


def journal_name(symbol: str, timeframe: str) -> str:
    return f"{symbol}_{timeframe}.signals.jsonl"


def lines_of(signals: list[messages.Signal]) -> bytes:
    return b"".join(json.dumps(messages.to_wire(s), allow_nan=False, separators=(",", ":")).encode() + b"\n"
                    for s in signals)


def parse(data: bytes) -> list[messages.Signal]:
    """The signals of a journal's bytes, in bar order; a torn or unreadable line ends it (what follows a torn
    append cannot be trusted to be in order)."""
    out: list[messages.Signal] = []
    for line in data.split(b"\n"):
        if not line:
            continue
        try:
            sig = messages.from_wire(messages.Signal, json.loads(line))
        except (ValueError, messages.SchemaError, TypeError):
            break
        if out and sig.bar_time <= out[-1].bar_time:
            break
        out.append(sig)
    return out


def after(signals: collections.deque[messages.Signal] | list[messages.Signal],
          since: int | None) -> list[messages.Signal]:
    """The signals after bar ``since`` (oldest first); with ``since`` None, the last one only."""
    if since is None:
        return list(signals)[-1:]
    return [s for s in signals if s.bar_time > since]


class Journal:
    """The kept signals of one model, in memory (answers) and in its file (restarts)."""

    def __init__(self, path: Path, fsync: bool, keep: int = KEEP):
        self.path = path
        self.fsync = fsync
        self.keep = keep
        self.kept: collections.deque[messages.Signal] = collections.deque(maxlen=keep)
        self.unwritten: list[messages.Signal] = []
        self.lines = 0  # lines in the file
        self.stale = False  # the file holds what is not kept (a reset not written yet): rewritten at the next write

    def load(self) -> None:
        """The file's signals (after a restart of the preditor); a missing file is an empty journal."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            data = b""
        signals = parse(data)
        self.kept = collections.deque(signals, maxlen=self.keep)
        self.lines = len(signals)
        self.unwritten = []
        if self.lines > self.keep or len(data) != len(lines_of(signals)):  # too long, or a torn line to cut
            self._rewrite()

    def reset(self) -> None:
        """A twin that starts flat: the signals of the one before are not its own. OSError goes up (the file is
        rewritten at the next write)."""
        self.kept.clear()
        self.unwritten = []
        self.stale = True
        self._rewrite()

    def add(self, signal: messages.Signal) -> None:
        if self.kept and signal.bar_time <= self.kept[-1].bar_time:
            return  # a replay after a crash: the same signal is kept already
        self.kept.append(signal)
        self.unwritten.append(signal)

    @property
    def kept_from(self) -> int | None:
        return self.kept[0].bar_time if self.kept else None

    def write(self) -> None:
        """Append the signals not written yet (before the snapshot that covers their bars). OSError goes up."""
        if not self.unwritten:
            return
        if self.stale or self.lines + len(self.unwritten) > 2 * self.keep:
            self._rewrite()
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "ab") as f:
            f.write(lines_of(self.unwritten))
            f.flush()
            if self.fsync:
                os.fsync(f.fileno())
        self.lines += len(self.unwritten)
        self.unwritten = []

    def _rewrite(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        durable.write_atomic(self.path, lines_of(list(self.kept)), fsync=self.fsync)
        self.lines = len(self.kept)
        self.unwritten = []
        self.stale = False
