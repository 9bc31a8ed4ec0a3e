import pytest

from common.config import Orchestrator
from common.messages import Heartbeat
from services.orchestrator import watchdog
from services.orchestrator.registry import ServiceView

CFG = Orchestrator(heartbeat_timeout_s=5, stall_timeout_s=10, restart_limit=3, restart_window_s=60)


def view(
    last_hb=None,
    pending=0,
    progress_changed_at=0.0,
    restarts=(),
    supervisor_state="RUNNING",
    restart_requested_at=None,
    escalated=False,
    info=None,
    failure="",
) -> ServiceView:
    v = ServiceView("executor")
    v.last_hb = last_hb
    if last_hb is not None:
        v.hb = Heartbeat("executor", 1, 1, "RUNNING", 1.0, 1, pending=pending, info=info or {})
    v.progress_changed_at = progress_changed_at
    v.restarts = list(restarts)
    v.supervisor_state = supervisor_state
    v.restart_requested_at = restart_requested_at
    v.escalated = escalated
    v.failure = failure
    return v


@pytest.mark.parametrize(
    "v, now, expected",
    [
        (view(last_hb=100.0), 104.9, []),
        (view(last_hb=100.0), 105.1, [watchdog.Restart("executor", "no heartbeat for 5.1 s")]),
        (view(), 1000.0, []),  # never heard: supervisord's business until it says hello
        (view(last_hb=100.0, restart_requested_at=101.0), 110.0, []),  # restart under way
        (
            view(last_hb=100.0, restart_requested_at=90.0),
            110.0,
            [watchdog.Restart("executor", "no heartbeat for 10.0 s")],
        ),
        (
            view(last_hb=100.0, pending=4, progress_changed_at=89.0),
            100.0,
            [watchdog.Restart("executor", "stalled: 4 pending, no progress for 11.0 s")],
        ),
        (view(last_hb=100.0, pending=0, progress_changed_at=0.0), 100.0, []),  # idle is not stalled
        (view(last_hb=100.0, info={"step": "preditor.warmup", "step_running_s": 119.0}), 100.0, []),
        (
            view(last_hb=100.0, info={"step": "preditor.warmup", "step_running_s": 121.0}),
            100.0,
            [watchdog.Restart("executor", "step preditor.warmup running for 121 s")],
        ),
        # a step waiting for a person (a new broker token) is not stuck: restarting it cannot help
        (view(last_hb=100.0, info={"step": "connector.connect", "step_running_s": 900.0,
                                   "waiting_for_operator": "a new broker token pair"}), 100.0, []),
        (view(last_hb=100.0, restarts=[50, 60, 70]), 100.0, []),  # 3 is the limit, not over it
        (
            view(last_hb=100.0, restarts=[50, 60, 70, 80]),
            100.0,
            [watchdog.Escalate("executor", "4 restarts in 60 s (limit 3)")],
        ),
        (view(last_hb=100.0, restarts=[10, 60, 70, 80]), 100.0, []),  # the oldest left the window
        (
            view(supervisor_state="FATAL"),
            100.0,
            [watchdog.Escalate("executor", "supervisord gave up starting it (FATAL)")],
        ),
        (view(supervisor_state="FATAL", escalated=True), 100.0, []),  # escalated once only
        # failed permanently (common/failure.py): it said why and exited; neither restarted nor escalated
        (view(last_hb=100.0, restarts=[50, 60, 70, 80], failure="CTRADER_CLIENT_ID not set"), 110.0, []),
        (view(supervisor_state="EXITED", failure="CTRADER_CLIENT_ID not set"), 100.0, []),
    ],
)
def test_assess(v, now, expected):
    assert watchdog.assess([v], now, CFG) == expected


def test_registry_counts_a_restart_per_new_pid_only():
    v = ServiceView("paper")
    assert v.new_epoch(10, 100, [], 1.0) is False
    assert v.see_pid(100, 2.0) is False  # the same pid seen again through supervisord
    assert v.new_epoch(20, 101, [], 3.0) is True
    assert v.see_pid(101, 3.5) is False
    assert v.restarts == [3.0]


def test_a_new_process_never_inherits_the_old_ones_state():
    v = ServiceView("preditor")
    v.new_epoch(10, 100, [], 1.0)
    v.on_heartbeat(Heartbeat("preditor", 100, 10, "RUNNING", 1.0, 1), 2.0)
    v.new_epoch(20, 101, [], 3.0)
    assert (v.state, v.pid, v.hb, v.last_hb) == ("WAITING", 101, None, None)


@pytest.mark.parametrize("views", [
    [view(last_hb=100.0)],
    [view(last_hb=100.0, restart_requested_at=98.0)],
    [view(last_hb=97.0, restart_requested_at=99.5)],
    [view(last_hb=100.0, pending=3, progress_changed_at=92.0)],
    [view(last_hb=101.5, pending=1, progress_changed_at=100.0), view(last_hb=99.0)],
    [view(last_hb=100.0, restarts=[50, 60, 70])],
    [view()],
])
def test_nothing_is_detected_before_next_check(views):
    """A loop sleeping from one `next_check` to the next (no new input meanwhile) detects what a loop checking all
    the time detects, within the millisecond it adds."""
    now = 100.0
    assert watchdog.assess(views, now, CFG) == []
    first_action = next((now + k / 100 for k in range(1, 3000) if watchdog.assess(views, now + k / 100, CFG)), None)
    t, detected = now, None
    while detected is None and (due := watchdog.next_check(views, t, CFG)) is not None:
        t = due + 0.001
        if watchdog.assess(views, t, CFG):
            detected = t
    if first_action is None:
        assert detected is None
        return
    assert detected is not None and detected <= first_action + 0.0011  # the millisecond past each deadline
    assert watchdog.assess(views, detected - 0.002, CFG) == []  # not detectable a moment earlier


def test_next_check_is_none_without_a_deadline():
    assert watchdog.next_check([view(), view(last_hb=100.0, escalated=True)], 100.0, CFG) is None


def test_a_service_that_said_it_is_stopping_is_not_restarted_for_its_silence():
    """supervisord (or a person, or the process itself) is stopping it: a slow exit is not a hang to SIGKILL, and
    the kill would hit the process supervisord starts next."""
    stopping = view(last_hb=100.0)
    stopping.state = "STOPPING"
    assert watchdog.assess([stopping], 130.0, CFG) == []
    running = view(last_hb=100.0)
    running.state = "RUNNING"
    assert watchdog.assess([running], 130.0, CFG) == [watchdog.Restart("executor", "no heartbeat for 30.0 s")]


@pytest.mark.parametrize("judged, now_running, same", [
    (4242, 4242, True),  # the silent process is still the one supervisord runs: killed
    (4242, 4300, False),  # respawned meanwhile: the new process is left alone
    (4242, 0, False),  # nothing runs (exited, in back-off, stopped): nothing to kill
    (0, 4242, False),  # never heard from: no process was judged
])
def test_the_watchdog_kills_only_the_process_it_judged(judged, now_running, same):
    assert watchdog.same_process(judged, now_running) is same


@pytest.mark.parametrize("silent, runnable, left_alone", [
    (3.5, True, True),  # waiting for a CPU (a lower priority under load): starved, not hung
    (5 * 4.0, True, True),  # up to STARVED_FACTOR heartbeat timeouts
    (5 * 4.0 + 0.1, True, False),  # past them: a process spinning in a loop of its own is restarted
    (3.5, False, False),  # asleep or stopped (deadlocked, frozen): hung, restarted at the timeout
])
def test_a_silent_process_waiting_for_a_cpu_is_starved_not_hung(silent, runnable, left_alone):
    assert watchdog.starved(silent, CFG.heartbeat_timeout_s, runnable) is left_alone
