"""The sender side of persistence writes: a record is kept until persistence acknowledges it.

A record carries its own ``id``; senders derive it from the record's natural key (``record_id``), so a record
re-created after a sender restart has the same id and the store's deduplication makes the retry a no-op.
Pure: the service runtime sends the batches and feeds back replies and timeouts.

Gathering (``quiet_s``, ``linger_s``): a live sender adds its records with the time, and a batch leaves once no
record was added for ``quiet_s``, or ``linger_s`` after the first record gathered since the last send, or at once
when ``max_batch`` records wait: what one bar makes leaves in one request (every table's records together, one
transaction at persistence) instead of one per loop pass.
The records wait in the sender's spool meanwhile (durable already); only their acknowledgement comes later.
"""

from __future__ import annotations

import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from hashlib import sha1

NAMESPACE = uuid.UUID("5f0c1d2e-7a34-4d5b-9c61-0e2f3a4b5c6d")


_NAMESPACE = NAMESPACE.bytes


def record_id(table: str, *natural_key: object) -> str:
    """A deterministic UUID for a record: the same natural key always gives the same id. It is
    ``str(uuid.uuid5(NAMESPACE, "table|key|..."))`` (a test holds them equal), its digest formatted directly: a
    sender makes several per bar and symbol, and the ``uuid.UUID`` object cost five times the rest."""
    digest = bytearray(sha1(_NAMESPACE + "|".join([table, *map(str, natural_key)]).encode()).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = digest.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


@dataclass
class Outbox:
    max_batch: int = 200
    quiet_s: float = 0.0  # a batch leaves once no record was added for this long ...
    linger_s: float = 0.0  # ... or this long after the first record gathered since the last send
    pending: OrderedDict[str, tuple[str, dict]] = field(default_factory=OrderedDict)  # id -> (table, record)
    inflight: list[str] = field(default_factory=list)
    acked: int = 0
    rejected: dict[str, str] = field(default_factory=dict)
    gathering_since: float | None = None  # when the first record added since the last send came (None: none)
    last_added: float = 0.0

    def add(self, table: str, record: dict, now: float | None = None) -> str:
        """Keep a record until acknowledged; ``now`` (monotonic seconds): it is gathered (``send_at``), else it
        may leave at once (records restored after a restart)."""
        rid = record.get("id")
        if not isinstance(rid, str) or not rid:
            raise ValueError(f"a {table} record needs a string 'id'")
        if rid not in self.pending:
            self.pending[rid] = (table, record)
            if now is not None:
                if self.gathering_since is None:
                    self.gathering_since = now
                self.last_added = now
        return rid

    def send_at(self) -> float | None:
        """When the next batch may leave (0.0: now); None when nothing waits or a batch is in flight."""
        if self.inflight or not self.pending:
            return None
        since = self.gathering_since
        if since is None or len(self.pending) >= self.max_batch:  # only records that waited already, or a full batch
            return 0.0
        return min(self.last_added + self.quiet_s, since + self.linger_s)

    def wake_at(self) -> float | None:
        """When the sender's loop must wake to send (None: no need): the linger's end; a pass before it (the
        loop's passes for its other work) sends once the records are quiet, so the wait adds no pass of its own.
        Without a quiet time, ``send_at``."""
        send_at = self.send_at()
        if not send_at or self.quiet_s <= 0 or self.gathering_since is None:
            return send_at
        return max(send_at, self.gathering_since + self.linger_s)

    def whole(self) -> None:
        """The sender has handed over all its burst's records: those gathered may leave now (``send_at``), without
        waiting for the quiet time or the linger."""
        self.gathering_since = None

    def __len__(self) -> int:
        return len(self.pending)

    def next_batch(self) -> dict[str, list[dict]] | None:
        """The oldest records not in flight, ``max_batch`` at most in all, as a map table -> records (each table's
        in the order handed over; the tables in the order of their oldest record); None when nothing waits or a
        batch is in flight."""
        if self.inflight or not self.pending:
            return None
        tables: dict[str, list[dict]] = {}
        inflight: list[str] = []
        for rid, (table, rec) in self.pending.items():
            if len(inflight) >= self.max_batch:
                break
            inflight.append(rid)
            part = tables.get(table)
            if part is None:
                tables[table] = [rec]
            else:
                part.append(rec)
        self.inflight = inflight
        self.gathering_since = None  # those left (past max_batch) have waited their turn
        return tables

    def on_reply(self, acked: list[str], rejected: dict[str, str]) -> None:
        for rid in acked:
            if self.pending.pop(rid, None) is not None:
                self.acked += 1
        for rid, why in rejected.items():
            if self.pending.pop(rid, None) is not None:
                self.rejected[rid] = why
        self.inflight = []  # anything neither acked nor rejected is retried with the same id

    def on_failure(self) -> None:
        self.inflight = []
