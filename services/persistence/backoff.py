"""Retry schedule for sink delivery: exponential backoff with jitter. Pure: time and randomness are
passed in (`now` in seconds on any monotonic clock, `rand` uniform in [0, 1))."""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class BackoffPolicy:
    base: float = 1.0  # delay after the first failure (before jitter)
    factor: float = 2.0
    cap: float = 300.0  # never wait longer than this


def delay(policy: BackoffPolicy, failures: int, rand: float) -> float:
    """Delay before the next attempt after `failures` consecutive failures ("equal jitter": a random
    point in the upper half of the exponential step, so retries from many clients spread out yet
    never come back immediately)."""
    if failures <= 0:
        return 0.0
    step = min(policy.cap, policy.base * policy.factor ** min(failures - 1, 64))
    return step / 2 + min(max(rand, 0.0), 1.0) * step / 2


@dataclass(frozen=True)
class RetryState:
    failures: int = 0
    next_attempt_at: float = 0.0
    last_error: str | None = None
    last_error_at: float | None = None
    last_success_at: float | None = None


def is_due(state: RetryState, now: float) -> bool:
    return now >= state.next_attempt_at


def on_failure(state: RetryState, now: float, error: str, rand: float,
               policy: BackoffPolicy = BackoffPolicy()) -> RetryState:
    failures = state.failures + 1
    return replace(state, failures=failures, next_attempt_at=now + delay(policy, failures, rand),
                   last_error=error, last_error_at=now)


def on_success(state: RetryState, now: float) -> RetryState:
    """A delivery went through: the schedule resets. last_error is kept (with its time) for the operator."""
    return replace(state, failures=0, next_attempt_at=now, last_success_at=now)
