"""Draining the outbox into a sink: take a batch, push it, mark it delivered; back off on failure.

Imperative shell around the pure schedule in `backoff`. One Drainer per sink; call `step(now, rand)`
from a loop (the service's drain thread) as often as you like: it does nothing until the next attempt
is due. The caller owns the clock and the random source.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from services.persistence import backoff
from services.persistence.sinks import Batch, Sink, SinkError, SinkPermanent
from services.persistence.store import OutboxItem, Store


@dataclass(frozen=True)
class DrainResult:
    delivered: int = 0
    parked: int = 0
    error: str | None = None  # a retriable failure that stopped this step

    @property
    def failed(self) -> bool:
        return self.error is not None


def _groups(items: list[OutboxItem]) -> list[tuple[str, list[OutboxItem]]]:
    """Consecutive runs of one table, in outbox order (keeps the write order across tables)."""
    groups: list[tuple[str, list[OutboxItem]]] = []
    for item in items:
        if groups and groups[-1][0] == item.table:
            groups[-1][1].append(item)
        else:
            groups.append((item.table, [item]))
    return groups


def _push(store: Store, sink: Sink, table: str, items: list[OutboxItem]) -> tuple[int, int]:
    """Push items; on a permanent rejection split the batch in halves until the bad records are found
    and park them. Returns (delivered, parked); a SinkRetriable propagates."""
    try:
        delivered = set(sink.push(Batch(table, [i.record for i in items])))
    except SinkPermanent as exc:
        if len(items) == 1:
            store.park(sink.name, items[0], str(exc))
            return 0, 1
        mid = len(items) // 2
        d1, p1 = _push(store, sink, table, items[:mid])
        d2, p2 = _push(store, sink, table, items[mid:])
        return d1 + d2, p1 + p2
    done = [i for i in items if i.id in delivered]
    store.mark_delivered(sink.name, done)
    return len(done), 0


def drain_once(store: Store, sink: Sink, *, batch_size: int = 500, max_batches: int = 20) -> DrainResult:
    """Deliver up to max_batches batches of pending records. Stops at the first retriable error and
    returns it (the records stay pending); never raises a SinkError."""
    delivered = parked = 0
    for _ in range(max_batches):
        items = store.pending(sink.name, batch_size)
        if not items:
            break
        try:
            for table, group in _groups(items):
                d, p = _push(store, sink, table, group)
                delivered += d
                parked += p
        except SinkError as exc:
            return DrainResult(delivered, parked, str(exc))
        if len(items) < batch_size:
            break
    return DrainResult(delivered, parked)


class Drainer:
    """Drains one sink with exponential backoff between failures; exposes status for the heartbeat."""

    def __init__(self, store: Store, sink: Sink, *, batch_size: int = 500,
                 policy: backoff.BackoffPolicy | None = None):
        self.store = store
        self.sink = sink
        self.batch_size = batch_size
        self.policy = policy or backoff.BackoffPolicy()
        self.state = backoff.RetryState()
        self.delivered_total = 0
        self.parked_total = 0

    def step(self, now: float, rand: float) -> DrainResult | None:
        """One drain attempt if due (else None). `now`: monotonic seconds; `rand`: uniform [0, 1)."""
        if not backoff.is_due(self.state, now):
            return None
        result = drain_once(self.store, self.sink, batch_size=self.batch_size)
        self.delivered_total += result.delivered
        self.parked_total += result.parked
        if result.failed:
            self.state = backoff.on_failure(self.state, now, result.error or "", rand, self.policy)
        elif result.delivered or result.parked or self.state.failures:
            self.state = backoff.on_success(self.state, now)
        return result

    def status(self, now: float) -> dict[str, Any]:
        """Backlog and error for the heartbeat (`pending writes`) and the health check."""
        backlog = self.store.backlog(self.sink.name)
        return {
            "sink": self.sink.name,
            "backlog": backlog.pending,
            "parked": backlog.parked,
            "delivered": self.delivered_total,
            "failures": self.state.failures,
            "last_error": self.state.last_error,
            "last_error_age_s": None if self.state.last_error_at is None else now - self.state.last_error_at,
            "next_attempt_in_s": max(0.0, self.state.next_attempt_at - now),
            "last_parked_error": backlog.last_error,
        }
