"""The persistence loop's periodic jobs (the once-a-second checks, the session heartbeat) run in the turn of the
runtime's heartbeat: one wake for both, not two (the service object in this process, its real store; no sockets)."""

from __future__ import annotations

import pytest
from harness import Home
from pers_helpers import trade_record

from services.persistence.service import (
    CHECK_EVERY_S,
    CHECKPOINT_AFTER_RECORDS,
    CHECKPOINT_QUIET_S,
    Persistence,
    WriteAnswer,
    at_beat,
    writes,
)


@pytest.mark.parametrize(("due", "period", "next_beat", "beat", "want"), [
    (11.0, 1.0, 11.0, 1.0, 11.0),  # run in a heartbeat's turn: the next heartbeat's turn
    (11.0, 1.0, 10.3, 1.0, 11.3),  # a phase of its own (the step that opened the store): the heartbeat after
    (10.95, 1.0, 11.0, 1.0, 11.0),  # just before a heartbeat: that one
    (11.0, 1.0, 10.5, 0.5, 11.0),  # heartbeats twice as often: every other one
    (70.0, 60.0, 10.25, 1.0, 70.25),  # a minute's job: the heartbeat at or just after it
    (11.0, 1.0, 15.0, 5.0, 11.0),  # heartbeats sparser than the job: its own deadline
    (11.0, 1.0, 14.0, 5.0, 11.0),
    (11.0, 1.0, 11.0, 0.0, 11.0),  # no heartbeat period: its own deadline
])
def test_a_periodic_job_is_moved_to_a_heartbeat_turn(due, period, next_beat, beat, want):
    assert at_beat(due, period, next_beat, beat) == pytest.approx(want)


@pytest.mark.parametrize(("beat", "after"), [(0.1, 1.0), (0.25, 1.0), (0.5, 1.0), (1.0, 1.0), (0.3, 1.2), (0.7, 1.4)])
def test_rounding_does_not_skip_a_heartbeat(beat, after):
    now = 12345.678901
    got = at_beat(now + 1.0, 1.0, now + beat, beat)  # the heartbeat set in the same turn, from its `now`
    assert got == pytest.approx(now + after, abs=1e-6)  # the first heartbeat at (or just before) the second


@pytest.fixture
def service(tmp_path):
    home = Home(tmp_path, {"runtime": {"heartbeat_interval_s": 1.0}, "persistence": {"heartbeat_interval_s": 60}})
    svc = Persistence(home.config())
    yield svc
    svc.on_stop()
    svc.ctx.term()
    home.close()


def test_the_checks_follow_the_heartbeat_after_the_store_opens_at_a_phase_of_its_own(service):
    now = 1000.0
    service._next_hb = now + 0.63  # the runtime's heartbeat, at the process's phase
    service._open()  # the step, in a turn between two heartbeats: its checks run at the next turn
    service.on_tick(now)
    assert service._next_day_check == pytest.approx(now + 1.63)  # the heartbeat's turn after a second, not now + 1
    assert service._next_session_hb == pytest.approx(now + 60.63)
    now = service._next_day_check
    service._next_hb = now + 1.0  # that turn: the runtime beat first (runtime.Service._loop), then on_tick
    service.on_tick(now)
    assert service._next_day_check == service._next_hb  # from now on, the same turn
    assert (service._next_session_hb - service._next_hb) % 1.0 == pytest.approx(0.0, abs=1e-6)
    assert 0 < CHECK_EVERY_S <= service.cfg.runtime.heartbeat_interval_s * 2


def test_the_wal_is_checkpointed_once_quiet_after_enough_records(service):
    """SQLite's own checkpoint comes inside the commit that grows the WAL past 1000 pages, at a bar's writes; this
    one comes CHECKPOINT_QUIET_S after the last write once CHECKPOINT_AFTER_RECORDS were written."""
    service._open()
    service.on_tick(999.0)  # the store's first checks, done
    service._next_hb = service._next_session_hb = service._next_day_check = float("inf")
    n = 0
    while n < CHECKPOINT_AFTER_RECORDS:
        batch = [trade_record(n + i) for i in range(50)]
        service._queued = [WriteAnswer(writes.prepare_write({"trades": batch}, session_id=None))]
        service._commit_writes()
        n += len(batch)
        assert service.progress.get("checkpoints", 0) == 0
    last = service._last_write_at
    service.on_tick(last + CHECKPOINT_QUIET_S / 2)  # writes may still come: not yet
    assert service.progress.get("checkpoints", 0) == 0
    service.on_tick(last + CHECKPOINT_QUIET_S)
    assert service.progress.get("checkpoints") == 1
    service.on_tick(last + 2 * CHECKPOINT_QUIET_S)  # nothing written since
    assert service.progress.get("checkpoints") == 1
