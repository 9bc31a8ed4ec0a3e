"""Structured logs: one line per event, ``key=value`` fields (or JSON), secrets never printed.

Bounded, so that a flood of bad requests cannot rotate the boot lines away: a message, a field and a traceback are
clipped (a peer's 100 KB string is never logged whole), and lines of one kind (logger, level, message template) are
rate-limited: at most ``LINES_PER_KIND`` per ``KIND_WINDOW_S``, the rest dropped and counted, the count logged as
one line when the window ends (at the next line logged, or at exit).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TextIO

from common.text import clip

MAX_MESSAGE_CHARS = 2000  # a line's message
MAX_FIELD_CHARS = 500  # one key=value field's value
MAX_TRACEBACK_CHARS = 20_000
LINES_PER_KIND = 100  # lines of one kind logged per window; the rest are dropped and counted
KIND_WINDOW_S = 10.0
KIND_CHARS = 64  # a kind is known by its logger, level and the head of its message template
MAX_KINDS = 512  # kinds tracked at once; past it, new kinds share one window (a flood of ever-new kinds is bounded)


SECRET_WORDS = ("secret", "token", "password", "passwd", "apikey", "api_key", "key", "dsn", "authorization")


def is_secret(key: str) -> bool:
    k = key.lower()
    return any(w in k for w in SECRET_WORDS)


def redact(value):
    """A copy of a decoded structure with every secret-looking key's value replaced."""
    if isinstance(value, dict):
        return {k: ("***" if isinstance(k, str) and is_secret(k) else redact(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v) for v in value]
    return value


class _Formatter(logging.Formatter):
    def __init__(self, service: str, as_json: bool):
        super().__init__()
        self.service = service
        self.as_json = as_json

    def format(self, record: logging.LogRecord) -> str:
        fields = redact(getattr(record, "fields", {}))
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z"
        msg = clip(record.getMessage(), MAX_MESSAGE_CHARS)
        if self.as_json:
            doc = {"ts": ts, "level": record.levelname, "service": self.service, "msg": msg,
                   **{str(k)[:KIND_CHARS]: _json_field(v) for k, v in fields.items()}}
            if record.exc_info:
                doc["exc"] = clip(self.formatException(record.exc_info), MAX_TRACEBACK_CHARS)
            return json.dumps(doc, default=str)
        kv = " ".join(f"{str(k)[:KIND_CHARS]}={clip(str(v), MAX_FIELD_CHARS)}" for k, v in fields.items())
        line = f"{ts} {record.levelname:<7} {self.service} {msg}" + (f" {kv}" if kv else "")
        if record.exc_info:
            line += "\n" + clip(self.formatException(record.exc_info), MAX_TRACEBACK_CHARS)
        return line


def _json_field(value: Any) -> Any:
    """A field's value as logged in JSON: as is when short, else its clipped text."""
    if isinstance(value, str):
        return clip(value, MAX_FIELD_CHARS)
    if isinstance(value, bool | int | float) or value is None:
        return value
    text = json.dumps(value, default=str)
    return value if len(text) <= MAX_FIELD_CHARS else clip(text, MAX_FIELD_CHARS)


@dataclass
class _Window:
    until: float  # the window's end (clock s)
    logged: int = 0
    dropped: int = 0


class KindLimit:
    """At most ``lines`` lines of one kind per ``window_s``; the others dropped and counted. Pure but for the
    clock it is given: ``admit`` says whether a record is logged, ``ended`` gives the counts of windows over."""

    OVERFLOW = ("", 0, "(lines of too many kinds)")

    def __init__(self, lines: int = LINES_PER_KIND, window_s: float = KIND_WINDOW_S, max_kinds: int = MAX_KINDS,
                 clock: Callable[[], float] = time.monotonic):
        self.lines = lines
        self.window_s = window_s
        self.max_kinds = max_kinds
        self.clock = clock
        self.windows: dict[tuple[str, int, str], _Window] = {}
        self.dropped_total = 0
        self._over: list[tuple[tuple[str, int, str], int]] = []  # counts of windows ended by a new line of theirs

    @staticmethod
    def kind(record: logging.LogRecord) -> tuple[str, int, str]:
        template = record.msg if isinstance(record.msg, str) else type(record.msg).__name__
        return record.name, record.levelno, template[:KIND_CHARS]

    def admit(self, record: logging.LogRecord, now: float) -> bool:
        key = self.kind(record)
        w = self.windows.get(key)
        if w is not None and w.until <= now:  # its window is over: a new one starts
            if w.dropped:
                self._over.append((key, w.dropped))
            w = self.windows[key] = _Window(now + self.window_s)
        if w is None:
            if len(self.windows) >= self.max_kinds:
                key = self.OVERFLOW
                w = self.windows.get(key)
            if w is None:
                w = self.windows[key] = _Window(now + self.window_s)
        if w.logged < self.lines:
            w.logged += 1
            return True
        w.dropped += 1
        self.dropped_total += 1
        return False

    def over_waiting(self) -> bool:
        return bool(self._over)

    def ended(self, now: float) -> list[tuple[tuple[str, int, str], int]]:
        """The windows over at ``now``, forgotten; those that dropped lines as (kind, count)."""
        over = [k for k, w in self.windows.items() if w.until <= now]
        out, self._over = self._over, []
        for k in over:
            w = self.windows.pop(k)
            if w.dropped:
                out.append((k, w.dropped))
        return out

    def pending(self) -> list[tuple[tuple[str, int, str], int]]:
        """Every window's count of dropped lines (at exit), forgotten."""
        out = self._over + [(k, w.dropped) for k, w in self.windows.items() if w.dropped]
        self._over = []
        self.windows.clear()
        return out


class LimitedHandler(logging.StreamHandler):
    """A stream handler that clips (the formatter) and rate-limits lines by kind (``KindLimit``), and logs each
    window's count of dropped lines as a line of its own."""

    def __init__(self, stream: TextIO, limit: KindLimit | None = None):
        super().__init__(stream)
        self.limit = limit or KindLimit()
        self._next_check = 0.0

    def emit(self, record: logging.LogRecord) -> None:
        limit = self.limit
        now = limit.clock()
        if now >= self._next_check or limit.over_waiting():  # a scan of the windows at most every window_s / 4
            self._next_check = now + limit.window_s / 4
            for kind, dropped in limit.ended(now):
                super().emit(self._dropped_line(kind, dropped))
        if limit.admit(record, now):
            super().emit(record)

    def _dropped_line(self, kind: tuple[str, int, str], dropped: int) -> logging.LogRecord:
        name, level, template = kind
        return logging.LogRecord(
            "oracle.logs", logging.WARNING, __file__, 0,
            "%d line(s) dropped (over %d per %g s of one kind): %s %s '%s'",
            (dropped, self.limit.lines, self.limit.window_s, name or "-", logging.getLevelName(level) if level else "-",
             template), None)

    def close(self) -> None:
        try:
            for kind, dropped in self.limit.pending():
                super().emit(self._dropped_line(kind, dropped))
        finally:
            super().close()


def setup(service: str, level: str = "INFO", fmt: str = "text") -> None:
    handler = LimitedHandler(sys.stderr)
    handler.setFormatter(_Formatter(service, fmt == "json"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def set_service(service: str) -> None:
    """The name the log lines carry from now on: a process that learns which program it is after ``setup`` (a
    preditor shard, ``preditor-1``, once its configuration is read)."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler.formatter, _Formatter):
            handler.formatter.service = service


def event(logger: logging.Logger, level: int, msg: str, **fields) -> None:
    """Log ``msg`` with structured fields: ``event(log, logging.INFO, "go", step="x")``."""
    logger.log(level, msg, extra={"fields": fields})
