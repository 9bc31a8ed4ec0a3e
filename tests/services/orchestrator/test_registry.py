"""What outlives the orchestrator (services/orchestrator/registry.py): restarts, the HALTED reason, the alerts; and a
stopped service told apart from one waiting."""

import json

import pytest

from common.messages import Heartbeat
from services.orchestrator.registry import ServiceView, durable_facts, restore_facts


def views() -> dict[str, ServiceView]:
    return {s: ServiceView(s) for s in ("paper", "executor")}


def test_restarts_the_halt_and_the_alerts_come_back_as_they_were():
    before = views()
    for t, pid in ((10.0, 1), (11.0, 2), (12.5, 3)):
        before["paper"].see_pid(pid, t)
    before["paper"].escalated = True
    facts = json.loads(json.dumps(durable_facts(before.values(), "paper: 3 restarts in 60 s", ["a", "b"])))
    after = views()
    halted, alerts = restore_facts(facts, after, now=20.0)
    assert (halted, alerts) == ("paper: 3 restarts in 60 s", ["a", "b"])
    assert after["paper"].restarts == [11.0, 12.5] and after["paper"].escalated
    assert after["paper"].restarts_within(60.0, 20.0) == 2  # the watchdog's window goes on counting them
    assert after["executor"].restarts == [] and not after["executor"].escalated


def test_restart_times_past_now_are_dropped_the_host_rebooted():
    after = views()
    restore_facts({"version": 1, "restarts": {"paper": [5.0, 500.0]}, "gone": {}}, after, now=100.0)
    assert after["paper"].restarts == [5.0]


@pytest.mark.parametrize(("facts", "named"), [
    ({"version": 2}, "version"),
    ({"version": 1, "halted_reason": 3}, "halted_reason"),
    ({"version": 1, "restarts": {"paper": ["x"]}}, "restarts.paper"),
    ({"version": 1, "escalated": "paper"}, "escalated"),
    ({"version": 1, "alerts": [1]}, "alerts"),
])
def test_malformed_facts_are_refused_naming_the_key(facts, named):
    with pytest.raises(ValueError, match=named):
        restore_facts(facts, views(), now=1.0)


def test_a_service_supervisord_stopped_is_stopped_not_waiting_with_its_old_pid():
    v = ServiceView("paper")
    v.new_epoch(7, 4242, [], now=0.0)
    v.on_heartbeat(Heartbeat("paper", 4242, 7, "RUNNING", 1.0, 1, [], {}), now=1.0)
    v.supervisor_state = "STOPPED"
    assert not v.stopped(now=2.0, timeout_s=3.0)  # its heartbeat is still fresh
    assert v.stopped(now=5.0, timeout_s=3.0)
    v.supervisor_state = "STARTING"
    assert not v.stopped(now=5.0, timeout_s=3.0)


def test_a_respawn_supervisord_shows_is_counted_before_its_hello_and_named_as_counted():
    v = ServiceView("preditor")
    assert v.counted_pid == 0
    v.new_epoch(7, 4242, [], now=0.0)
    v.see_pid(4300, now=1.0)  # supervisord's respawn, polled before the new process said hello
    assert (len(v.restarts), v.pid, v.epoch, v.counted_pid) == (1, 4242, 7, 4300)
    v.new_epoch(8, 4300, [], now=2.0)  # its hello: the same restart, not another
    assert (len(v.restarts), v.pid, v.epoch, v.counted_pid) == (1, 4300, 8, 4300)


def test_a_preditor_load_result_gives_its_live_and_refused_models():
    v = ServiceView("preditor")
    v.on_load_result({"models": {"EURUSD": "H1 EURUSD_H1.zip"}, "refused": ["GBPUSD_M15.zip: refused: x"]})
    assert (v.live_models, v.refused_models) == (["EURUSD"], ["GBPUSD_M15.zip: refused: x"])
    v.on_load_result({"models": ["EURUSD", "USDJPY"], "refused_models": []})  # its heartbeat's form
    assert (v.live_models, v.refused_models) == (["EURUSD", "USDJPY"], [])


def test_a_new_preditor_process_has_no_live_models_until_its_own_load():
    v = ServiceView("preditor")
    v.new_epoch(1, 100, [], now=0.0)
    v.on_load_result({"models": ["EURUSD"]})
    v.new_epoch(2, 101, [], now=5.0)
    assert v.live_models is None
