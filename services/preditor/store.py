"""Every twin's snapshot and signal journal in one append-only file (``twins.jsonl`` in the snapshot directory):
one write per bar time for all the models stepped and at most one fdatasync (one for a burst of bar times: the
service syncs once the bars pause), instead of two fsynced files per model.

Why an append-only file rather than one combined file rewritten per bar time: a twin's snapshot is ~18 KB, almost
all of it its window of 350 bars, and a bar time changes one bar of each window. Rewriting 20 snapshots writes
~350 KB per bar time; appending what changed (the new bar, the position, the last decision, the signal: ~1 KB a
model) writes ~20 KB. The file is compacted (rewritten whole, atomically: ``durable.write_atomic``) once what was
appended since the last rewrite exceeds twice what a rewrite holds (and ``COMPACT_MIN``), so the bytes written
stay within ~1.5x of the bytes appended, and a restart reads at most ~3x the content.

Records, one JSON object a line, each naming its model (``"m": "<SYM>_<TF>"``):

- ``{"m", "sig": <Signal>}``: a kept signal (``signals_since``; the last ``journal.KEEP`` of a model are kept);
- ``{"m", "reset": true}``: the model's signals so far are not its twin's (a twin that starts flat);
- ``{"m", "twin": <snapshot>}``: the twin's whole snapshot (``live.snapshot_bytes``'s format);
- ``{"m", "n": <window length>, "add": [<new bars>], "next": <snapshot after its bars>}``: the snapshot relative
  to the model's one before it in the file: its bars are (the previous bars + ``add``)[-n:].

The journal's rule holds: per model, the new signals are written before its twin record, in the same write, and
reading stops at the first torn or unreadable line (what follows it cannot be trusted, also after a power cut
that kept a later page but not an earlier one), so a twin record is never read without the signals written before
it: a restart never skips a bar whose signal is not kept. A torn tail is cut when the file is opened and the next
write rewrites the file. The signals are durable after the fdatasync; before it, a power cut may take the last
writes, and the restart replays their bars from the snapshot before them (the same signals again).

Upgrade: a model the file does not hold is read from the per-model files of before (``<SYM>_<TF>.twin.json`` and
``<SYM>_<TF>.signals.jsonl``); they are removed once the file holds that model (``service._flush``).

The pure part (``parse``, ``*_line``) takes and returns values; ``TwinLog`` holds the file (``durable.AppendLog``:
the torn tail cut at open, a failed append cut off, the rewrite atomic).
"""

from __future__ import annotations

import collections
import functools
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from common import durable, messages
from common.twin.bars import same_bits
from services.preditor.journal import KEEP
from services.preditor.live import dumps

LOG_NAME = "twins.jsonl"
COMPACT_MIN = 1 << 20  # bytes appended before a rewrite is considered (fewer rewrites of a small file)


@dataclass
class Saved:
    """What the file holds for one model."""

    snapshot: dict | None = None  # the twin's snapshot, as ``live.snapshot_bytes`` decodes
    signals: collections.deque[messages.Signal] = field(default_factory=lambda: collections.deque(maxlen=KEEP))
    lines: collections.deque[bytes] = field(default_factory=lambda: collections.deque(maxlen=KEEP))  # of ``signals``


def model_key(symbol: str, timeframe: str) -> str:
    return f"{symbol}_{timeframe}"


@functools.lru_cache(maxsize=4096)
def _head(key: str) -> bytes:
    return b'{"m":' + json.dumps(key).encode() + b","


def signal_line(key: str, signal: messages.Signal) -> bytes:
    return b"".join((_head(key), b'"sig":', dumps(messages.to_wire(signal)), b"}\n"))


def signal_lines(key: str, signals: list[messages.Signal]) -> bytes:
    return b"".join(signal_line(key, s) for s in signals)


def reset_line(key: str) -> bytes:
    return _head(key) + b'"reset":true}\n'


def twin_line(key: str, snapshot: bytes) -> bytes:
    """The whole snapshot (``live.snapshot_bytes`` / ``SnapshotEncoder.encode``'s bytes)."""
    return _head(key) + b'"twin":' + snapshot + b"}\n"


def next_line(key: str, n: int, rows: list[bytes], after: dict) -> bytes:
    """A snapshot relative to the one before: ``rows`` (the new bars, encoded as the snapshot encodes them), the
    window length ``n`` and the entries after the bars (``TwinState.to_dict_after_bars``)."""
    return b"".join((_head(key), b'"n":', str(n).encode(), b',"add":[', b",".join(rows), b'],"next":', dumps(after),
                     b"}\n"))


def added_rows(logged: np.ndarray | None, bars: np.ndarray) -> int | None:
    """How many leading rows of ``bars`` continue ``logged`` (the bars of the record before), bit for bit, when
    ``bars`` is ``logged`` plus new bars with its oldest dropped; None when it is not (a whole record is due)."""
    if logged is None or not len(logged) or not len(bars):
        return None
    start = int(np.searchsorted(logged[:, 0], bars[0, 0]))
    n = len(logged) - start
    if start == len(logged) or n > len(bars) or not same_bits(logged[start:], bars[:n]):
        return None
    return n


def _apply(saved: dict[str, Saved], rec: dict, line: bytes) -> None:
    """One record (``line``: its bytes, newline included) onto ``saved``; raises (ValueError, KeyError, TypeError,
    SchemaError) on a malformed one."""
    key = rec["m"]
    if not isinstance(key, str):
        raise TypeError("model key is not a string")
    entry = saved.get(key) or Saved()
    if "sig" in rec:
        sig = messages.from_wire(messages.Signal, rec["sig"])
        if not entry.signals or sig.bar_time > entry.signals[-1].bar_time:  # else a copy written again
            entry.signals.append(sig)
            entry.lines.append(line)  # written again as read at a rewrite (not encoded again)
    elif rec.get("reset") is True:
        entry.signals.clear()
        entry.lines.clear()
    elif "twin" in rec:
        if not isinstance(rec["twin"], dict) or not isinstance(rec["twin"].get("bars"), list):
            raise TypeError("twin snapshot is not a map with bars")
        entry.snapshot = rec["twin"]
    elif "next" in rec:
        n, add, after, base = rec["n"], rec["add"], rec["next"], entry.snapshot
        if base is None or not isinstance(n, int) or n < 1 or not isinstance(add, list) or not isinstance(after, dict):
            raise ValueError("a relative twin record without its base, or malformed")
        entry.snapshot = {"version": base["version"], "model_id": base["model_id"],
                          "bars": (base["bars"] + add)[-n:], **after}
    else:
        raise ValueError("unknown record")
    saved[key] = entry


def parse(data: bytes) -> tuple[dict[str, Saved], int]:
    """What the file's bytes hold per model, and the length of the good part (up to the first torn or unreadable
    line, excluded)."""
    saved: dict[str, Saved] = {}
    good = 0
    while (end := data.find(b"\n", good)) >= 0:
        try:
            line = data[good:end + 1]
            _apply(saved, json.loads(line), line)
        except (ValueError, KeyError, TypeError, messages.SchemaError):
            break
        good = end + 1
    return saved, good


def whole_lines(key: str, entry: Saved) -> bytes:
    """A model's part of a rewritten file, from what was read (a model this process has not written)."""
    lines = entry.lines if len(entry.lines) == len(entry.signals) else map(functools.partial(signal_line, key),
                                                                          entry.signals)
    out = reset_line(key) + b"".join(lines)
    if entry.snapshot is not None:
        out += twin_line(key, dumps(entry.snapshot))
    return out


class TwinLog:
    """The file (a ``durable.AppendLog``): read once (``load``), then appended (``append``: one fdatasync, or none
    until ``sync`` when the appends of a burst of bars share one) or rewritten (``rewrite``, one fsync)."""

    def __init__(self, directory: Path, fsync: bool):
        self.directory = directory
        self.path = directory / LOG_NAME
        self.fsync = fsync
        self.base = 0  # bytes of the file at its last rewrite (or load)
        self.appended = 0  # bytes appended since
        self.must_rewrite = True  # no file yet, a torn tail, or a failed write: the next write rewrites the file
        self.unsynced = False  # appended without an fdatasync yet (in the OS: a kill loses nothing, a power cut may)
        self._log: durable.AppendLog | None = None

    def load(self) -> dict[str, Saved]:
        """What the file holds per model (a missing file holds nothing). OSError goes up."""
        log = self._file()
        data = "".join(line + "\n" for line in log.lines).encode("utf-8", "surrogateescape")
        log.lines = []
        saved, good = parse(data)
        self.base, self.appended = good, 0
        self.must_rewrite = not data or good != len(data) or log.torn
        return saved

    def due(self, more: int) -> bool:
        """Is the next write a rewrite (``more`` bytes to append otherwise)?"""
        return self.must_rewrite or self.appended + more > max(COMPACT_MIN, 2 * self.base)

    def append(self, data: bytes, sync: bool = True) -> None:
        """``data``: whole lines; ``sync=False``: written to the OS only, made durable by the next ``sync`` (or synced
        append, or rewrite). OSError goes up (the file as it was; the next write rewrites it)."""
        log = self._file()
        log.add(data[:-1])
        try:
            log.commit(sync=self.fsync and sync)
        except OSError:
            log.drop_pending()
            self.must_rewrite = True
            raise
        self.appended += len(data)
        self.unsynced = self.fsync and not sync

    def sync(self) -> None:
        """Make the appends without an fdatasync durable. OSError goes up (what they wrote may be lost on a power
        cut: the next write rewrites the file)."""
        if not self.unsynced:
            return
        try:
            self._file().sync()
        except OSError:
            self.must_rewrite = True
            raise
        finally:
            self.unsynced = False

    def rewrite(self, data: bytes) -> None:
        """The file replaced by ``data`` (whole lines), atomically. OSError goes up."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self._file().rewrite_data(data, sync=self.fsync)  # the joined lines as they are: no copy
        self.base, self.appended, self.must_rewrite, self.unsynced = len(data), 0, False, False

    def _file(self) -> durable.AppendLog:
        if self._log is None:
            self._log = durable.AppendLog(self.path)
        return self._log
