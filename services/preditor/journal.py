"""One model's recent signals, kept so that paper can ask what it missed while it was down (``signals_since``).

Kept in memory (``Journal``) and written with the twins' snapshots in one file (``store.py``), always before the
snapshot that covers them: a crash in between replays those bars from the previous snapshot, and the same signals
(the same bars, the same twin) are not kept twice (a signal is kept only after the last one kept). The last
``KEEP`` signals are kept.

Before the one file, each model had its own JSON-lines journal beside its snapshot (``<SYM>_<TF>.signals.jsonl``):
``parse`` reads it once, for the upgrade (``lines_of`` writes that format, for the tests).
"""

from __future__ import annotations

import collections
import collections.abc
import itertools
import json

from common import messages

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
    """The kept signals of one model, in memory (answers); ``store.TwinLog`` keeps them on disk (restarts).

    With ``line`` (a signal's line in the file), each signal's line is encoded once, when it is added, and kept
    beside it: a rewrite of the file writes the kept lines again without encoding thousands of signals anew."""

    def __init__(self, signals: collections.abc.Iterable[messages.Signal] = (), keep: int = KEEP,
                 written: bool = True, line: collections.abc.Callable[[messages.Signal], bytes] | None = None,
                 lines: collections.abc.Iterable[bytes] = ()):
        self.kept: collections.deque[messages.Signal] = collections.deque(signals, maxlen=keep)
        self.unwritten: list[messages.Signal] = []
        self.written = written  # the file holds ``kept`` but ``unwritten``; False: it must be given all of them
        self.line = line
        # the lines of the last len(lines) signals of ``kept`` (``lines``: those of ``signals``, as read)
        self.lines: collections.deque[bytes] = collections.deque(lines, maxlen=keep)
        if len(self.lines) > len(self.kept):
            self.lines.clear()
        self.unwritten_lines: list[bytes] = []

    def reset(self) -> None:
        """A twin that starts flat: the signals of the one before are not its own."""
        self.kept.clear()
        self.unwritten = []
        self.lines.clear()
        self.unwritten_lines = []
        self.written = False

    def add(self, signal: messages.Signal) -> None:
        if self.kept and signal.bar_time <= self.kept[-1].bar_time:
            return  # a replay after a crash: the same signal is kept already
        self.kept.append(signal)
        self.unwritten.append(signal)
        if self.line is not None:
            line = self.line(signal)
            self.lines.append(line)
            self.unwritten_lines.append(line)

    def all_lines(self) -> bytes:
        """The lines of every kept signal (those not encoded yet encoded now, once; needs ``line``)."""
        return b"".join(self.every_line())

    def every_line(self) -> collections.deque[bytes]:
        """``all_lines``, one item a line (for a caller that joins more than these)."""
        assert self.line is not None
        missing = len(self.kept) - len(self.lines)
        if missing > 0:
            self.lines.extendleft(reversed([self.line(s) for s in itertools.islice(self.kept, missing)]))
        return self.lines

    def new_lines(self) -> bytes:
        """The lines of the signals not written yet (needs ``line``)."""
        return b"".join(self.unwritten_lines)

    def now_written(self) -> None:
        self.unwritten, self.unwritten_lines, self.written = [], [], True

    @property
    def kept_from(self) -> int | None:
        return self.kept[0].bar_time if self.kept else None
