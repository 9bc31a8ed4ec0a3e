"""Sinks: remote stores that receive the local store's records. One interface, one module per kind.

`push(batch)` delivers one batch of records of one table (upsert on `id`, so a repeated push is a
no-op) and returns the ids delivered. It raises:
- `SinkRetriable` when the sink is unreachable or failing as a whole (network, timeout, 5xx, auth,
  missing table): the drain backs off and tries the same records again later;
- `SinkPermanent` when the sink rejected the data itself (a constraint or a bad value): the drain splits
  the batch to find the record(s) and parks them; they stay in the local outbox, never dropped.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol


class SinkError(Exception):
    retriable: bool = True


class SinkRetriable(SinkError):
    retriable = True


class SinkPermanent(SinkError):
    retriable = False


class SinkConfigError(ValueError):
    """A sink cannot be built from the configuration or environment; the message names the setting."""


@dataclass(frozen=True)
class Batch:
    table: str
    records: list[dict[str, Any]]  # JSON form (records.to_json), each with `id` and `rev`

    @property
    def ids(self) -> list[str]:
        return [str(r["id"]) for r in self.records]


class Sink(Protocol):
    name: str

    def push(self, batch: Batch) -> list[str]: ...

    def close(self) -> None: ...


# PostgreSQL error classes that mean "this data can never be stored as is" (SQLSTATE class 22 data
# exception, 23 integrity constraint violation). Everything else is treated as a sink-side problem.
PERMANENT_SQLSTATE_CLASSES = ("22", "23")


def is_permanent_sqlstate(code: str | None) -> bool:
    return bool(code) and len(code) == 5 and code[:2] in PERMANENT_SQLSTATE_CLASSES
