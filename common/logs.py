"""Structured logs: one line per event, ``key=value`` fields (or JSON), secrets never printed."""

from __future__ import annotations

import json
import logging
import sys
import time

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
        msg = record.getMessage()
        if self.as_json:
            doc = {"ts": ts, "level": record.levelname, "service": self.service, "msg": msg, **fields}
            if record.exc_info:
                doc["exc"] = self.formatException(record.exc_info)
            return json.dumps(doc, default=str)
        kv = " ".join(f"{k}={v}" for k, v in fields.items())
        line = f"{ts} {record.levelname:<7} {self.service} {msg}" + (f" {kv}" if kv else "")
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def setup(service: str, level: str = "INFO", fmt: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter(service, fmt == "json"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def event(logger: logging.Logger, level: int, msg: str, **fields) -> None:
    """Log ``msg`` with structured fields: ``event(log, logging.INFO, "go", step="x")``."""
    logger.log(level, msg, extra={"fields": fields})
