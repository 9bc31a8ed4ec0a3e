"""The pure retry schedule."""

from __future__ import annotations

import pytest

from services.persistence.backoff import BackoffPolicy, RetryState, delay, is_due, on_failure, on_success

P = BackoffPolicy(base=1.0, factor=2.0, cap=60.0)


@pytest.mark.parametrize(("failures", "rand", "expected"), [
    (0, 0.5, 0.0),
    (1, 0.0, 0.5), (1, 1.0, 1.0),
    (2, 0.0, 1.0), (2, 0.5, 1.5),
    (4, 1.0, 8.0),
    (7, 0.0, 30.0), (7, 1.0, 60.0),  # 64 capped to 60
    (500, 0.25, 37.5),  # no overflow
])
def test_delay_table(failures, rand, expected):
    assert delay(P, failures, rand) == pytest.approx(expected)


def test_jitter_spreads_within_the_upper_half():
    ds = [delay(P, 3, r / 10) for r in range(10)]
    assert min(ds) >= 2.0 and max(ds) <= 4.0 and len(set(ds)) == 10


def test_state_transitions():
    s = RetryState()
    assert is_due(s, 0.0)
    s = on_failure(s, 100.0, "boom", rand=0.0, policy=P)
    assert (s.failures, s.next_attempt_at, s.last_error, s.last_error_at) == (1, 100.5, "boom", 100.0)
    assert not is_due(s, 100.4) and is_due(s, 100.5)
    s = on_failure(s, 101.0, "boom2", rand=1.0, policy=P)
    assert (s.failures, s.next_attempt_at) == (2, 103.0)
    s = on_success(s, 104.0)
    assert (s.failures, s.last_success_at, s.last_error) == (0, 104.0, "boom2")
    assert is_due(s, 104.0)
