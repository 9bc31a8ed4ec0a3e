"""Subscriber-side tracking of ``(src, epoch, seq)`` per stream: gaps and restarts are detected, never ignored.

A stream is one publisher's topic (``seq`` counts per publisher and topic), so a subscriber's topic filter
never looks like a loss.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum


class Delivery(Enum):
    IN_ORDER = "in_order"
    FIRST = "first"  # first message seen from this publisher (a late joiner may miss earlier ones)
    NEW_EPOCH = "new_epoch"  # the publisher restarted
    GAP = "gap"  # messages were lost between the previous one and this one
    DUPLICATE = "duplicate"  # seq not after the last one seen: drop it
    STALE_EPOCH = "stale_epoch"  # a message from an older process start: drop it


@dataclass(frozen=True, slots=True)
class Seen:
    delivery: Delivery
    missed: int = 0  # messages lost, for GAP

    @property
    def accept(self) -> bool:
        return self.delivery not in (Delivery.DUPLICATE, Delivery.STALE_EPOCH)


# the answers without a count, made once: a Seen is immutable, and one per message is a cost on every message
_FIRST = Seen(Delivery.FIRST)
_IN_ORDER = Seen(Delivery.IN_ORDER)
_NEW_EPOCH = Seen(Delivery.NEW_EPOCH)
_DUPLICATE = Seen(Delivery.DUPLICATE)
_STALE_EPOCH = Seen(Delivery.STALE_EPOCH)


@dataclass
class SequenceTracker:
    last: dict[str, tuple[int, int]] = field(default_factory=dict)  # stream -> (epoch, seq)
    gaps: int = 0
    missed: int = 0
    restarts: int = 0
    dropped: int = 0

    def observe(self, src: str, epoch: int, seq: int) -> Seen:
        prev = self.last.get(src)
        if prev is None:
            self.last[src] = (epoch, seq)
            return _FIRST
        prev_epoch, prev_seq = prev
        if epoch != prev_epoch:
            if epoch < prev_epoch:
                self.dropped += 1
                return _STALE_EPOCH
            self.last[src] = (epoch, seq)
            self.restarts += 1
            return _NEW_EPOCH
        if seq <= prev_seq:
            self.dropped += 1
            return _DUPLICATE
        self.last[src] = (epoch, seq)
        if seq == prev_seq + 1:
            return _IN_ORDER
        missed = seq - prev_seq - 1
        self.gaps += 1
        self.missed += missed
        return Seen(Delivery.GAP, missed)

    def counters(self) -> dict[str, int]:
        return {"gaps": self.gaps, "missed": self.missed, "restarts": self.restarts, "dropped": self.dropped}
