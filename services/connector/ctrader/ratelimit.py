"""Sliding-window rate limit decision (pure): how long to wait before the next request."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field


@dataclass
class SlidingWindow:
    limit: int
    window: float = 1.0
    sent: deque[float] = field(default_factory=deque)

    def delay(self, now: float) -> float:
        """Seconds to wait from `now` before one more request fits in the window."""
        while self.sent and self.sent[0] <= now - self.window:
            self.sent.popleft()
        if len(self.sent) < self.limit:
            return 0.0
        return self.sent[0] + self.window - now

    def record(self, now: float) -> None:
        self.sent.append(now)
