"""The dashboard's view (services/web/view.py): the streams and the store's history folded into what browsers show."""

import pytest
import status_samples

from common import messages
from services.web.view import Dashboard

EPOCH = 1_700_000_000


def signal(t: int, direction: int = 0, intensity: int = 0, vpnl: float = 0.0, sym: str = "EURUSD") -> messages.Signal:
    action = 0 if direction == 0 else (intensity if direction > 0 else 3 + intensity)
    return messages.Signal(sym, t, 1.1, action, direction, intensity, 2, vpnl)


def hb(service: str, epoch: int, pid: int = 10) -> messages.Heartbeat:
    return messages.Heartbeat(service, pid, epoch, "RUNNING", 3.0, 50 * 2**20)


def test_one_curve_point_per_bar_time_marked_with_the_latest_figures():
    v = Dashboard()
    v.apply(messages.AccountUpdate(10_000.0, 10_000.0, 0, 0, "USD"), 1.0)
    v.apply(signal(EPOCH), 2.0)
    v.apply(signal(EPOCH + 3600, 1, 2, vpnl=15.0), 3.0)
    v.apply(messages.AccountUpdate(10_000.0, 10_012.5, 0, 0, "USD"), 4.0)  # marks the bar after it
    snap = v.snapshot(5.0)
    assert snap["curve"] == [[0, EPOCH, 10_000.0, 10_000.0], [1, EPOCH + 3600, 10_012.5, 10_015.0]]
    v.apply(signal(EPOCH + 3600, 1, 2, vpnl=20.0), 6.0)  # the same bar again: no new point
    v.apply(signal(EPOCH, 0), 7.0)  # an older bar (a catch-up): the curve only moves forward
    assert [p[0] for p in v.snapshot(8.0)["curve"]] == [0, 1]


def test_paper_equity_is_the_start_balance_plus_paper_closes_plus_open_virtual_pnl():
    v = Dashboard()
    v.load_session({"session_id": "s1", "start_time": "2026-12-07T00:00:00.000000Z", "initial_balance": 5000.0})
    v.apply(messages.PaperTrade("p1", "EURUSD", 1, 1, EPOCH, EPOCH + 3600, 1.1, 1.2, 30.0, 10.0, 0.5), 1.0)
    v.apply(signal(EPOCH + 7200, -1, 1, vpnl=-4.0), 2.0)
    v.apply(messages.PositionClosed(7, "EURUSD", 1, 0.1, 1.1, 1.2, 12.0, 0.0, -1.0, 11.0, 3.0, "CLIENT", False,
                                    balance=5011.0), 3.0)
    assert v.paper_equity() == pytest.approx(5026.0)
    row = v.snapshot(4.0)["symbols"]["EURUSD"]
    assert (row["paper_pnl"], row["real_pnl"], row["drift"]) == (30.0, 11.0, 19.0)
    assert (row["virtual"], row["signal"], row["real_trades"], row["paper_trades"]) == ("SHORT1", "SHORT1", 1, 1)


def test_updates_carry_only_the_points_changed_since_the_last():
    v = Dashboard(curve_points=3)
    v.apply(messages.AccountUpdate(100.0, 100.0, 0, 0, "USD"), 0.0)
    for i in range(5):
        v.apply(signal(EPOCH + i * 3600), float(i))
    first = v.update(10.0)
    assert [p[0] for p in first["curve"]] == [2, 3, 4]  # bounded: the last curve_points
    assert v.update(11.0)["curve"] == []
    v.apply(messages.AccountUpdate(100.0, 101.0, 0, 0, "USD"), 12.0)
    assert v.update(13.0)["curve"] == [[4, EPOCH + 4 * 3600, 101.0, 100.0]]


def test_real_positions_from_the_book_then_fills_and_closes():
    v = Dashboard()
    v.load_positions(messages.Positions([messages.Position(5, "EURUSD", -1, 0.1, 1.1, 0.0)],
                                        messages.AccountInfo(1000.0, 990.0, 0, 0, 0, "USD", 100.0)))
    assert v.snapshot(0)["symbols"]["EURUSD"]["real"] == "SHORT"
    v.apply(messages.PositionClosed(5, "EURUSD", -1, 0.1, 1.1, 1.2, -10.0, 0, 0, -10.0, 1.0, "SL_TP", True), 1.0)
    v.apply(messages.Fill("GBPUSD", 9, "cid", 1, 0.2, 1.3, 2.0, 1), 2.0)
    snap = v.snapshot(3.0)["symbols"]
    assert (snap["EURUSD"]["real"], snap["GBPUSD"]["real"], snap["GBPUSD"]["real_lots"]) == ("FLAT", "LONG", 0.2)


def test_services_from_the_status_then_heartbeats_and_restarts_counted_from_new_epochs():
    v = Dashboard()
    v.load_status(status_samples.orchestrator(services={"executor": status_samples.summary(pid=10, epoch=1)}))
    v.apply(hb("executor", 1), 100.0)
    v.apply(hb("executor", 2, pid=11), 101.0)  # a new process
    v.apply(hb("executor", 1), 101.2)  # the old one's last beat, delivered after (another pipe): not a restart
    s = v.snapshot(102.5)["services"]["executor"]
    assert (s["state"], s["pid"], s["restarts"], s["hb_age_s"], s["rss_mb"]) == ("RUNNING", 11, 2, 1.5, 50.0)
    # a report that predates the process heard already: its count, and the one restart it could not know
    v.load_status(status_samples.orchestrator(services={"executor": status_samples.summary(pid=10, epoch=1)}))
    assert v.snapshot(103.0)["services"]["executor"]["restarts"] == 2
    v.apply(hb("paper", 5), 104.0)  # a service the report did not list: its first process
    assert v.snapshot(104.0)["services"]["paper"]["restarts"] == 0


@pytest.mark.parametrize("heard_before_the_report", [False, True])
def test_a_restart_the_report_counted_before_its_hello_is_not_counted_again(heard_before_the_report):
    """The orchestrator counts supervisord's respawn (a new pid) before the new process says hello: its report then
    has the old process's pid and epoch, the restart counted, and the new pid as ``counted_pid``. The new process's
    heartbeats, heard before or after that report, are that restart, not another (the count the orchestrator says)."""
    v = Dashboard()
    v.apply(hb("preditor", 1, pid=10), 100.0)
    if heard_before_the_report:
        v.apply(hb("preditor", 2, pid=11), 101.0)
    respawned = status_samples.summary(pid=10, epoch=1, restarts=1, counted_pid=11)
    v.load_status(status_samples.orchestrator(services={"preditor": respawned}))
    v.apply(hb("preditor", 2, pid=11), 102.0)
    assert v.snapshot(102.5)["services"]["preditor"]["restarts"] == 1
    v.apply(hb("preditor", 3, pid=12), 103.0)  # a later restart, which the report could not know
    assert v.snapshot(103.5)["services"]["preditor"]["restarts"] == 2


def test_halts_and_alerts_are_kept_newest_last_and_bounded():
    v = Dashboard(alert_count=2)
    v.apply(messages.Alert("forbidden", "warning", "refused", "paper"), 1.0)
    v.apply(messages.SysState("HALTED", 2_000_000_000, halted_reason="paper: 4 restarts in 60 s"), 2.0)
    v.apply(messages.SysState("HALTED", 2_000_000_000, halted_reason="paper: 4 restarts in 60 s"), 3.0)  # once
    v.apply(messages.Alert("model_refused", "critical", "EURUSD: corrupt", "preditor"), 4.0)
    alerts = v.snapshot(5.0)["alerts"]
    assert [(a["kind"], a["halt"]) for a in alerts] == [("halted", True), ("model_refused", False)]
    assert v.snapshot(5.0)["system"] == {"state": "HALTED", "since": 2.0, "halted_reason": "paper: 4 restarts in 60 s",
                                         "issues": []}


def test_history_from_the_store():
    v = Dashboard()
    v.load_session({"session_id": "s1", "start_time": "2026-12-07T00:00:00.000000Z", "initial_balance": 1000.0})
    trades = [{"id": "a", "symbol": "EURUSD", "action": "OPEN", "is_paper": False, "pnl": 0.0,
               "timestamp": "2017-03-01T09:00:01.000000Z", "position_id": "7"},
              {"id": "b", "symbol": "EURUSD", "action": "CLOSE", "is_paper": True, "pnl": 2.0,
               "timestamp": "2017-03-01T11:00:00.000000Z"},  # paper: dated by the bar that closed it
              {"id": "c", "symbol": "EURUSD", "action": "CLOSE", "is_paper": False, "pnl": -3.5,
               "timestamp": "2017-03-01T12:00:02.000000Z", "position_id": "7"}]  # real: the broker's clock
    signals = [{"symbol": "EURUSD", "bar_time": "2017-03-01T11:00:00.000000Z", "direction": 0, "intensity": 0,
                "hmm_state": 1, "data": {"close": 1.06, "action_index": 0, "virtual_pnl": 0.0}},
               {"symbol": "EURUSD", "bar_time": "2017-03-01T10:00:00.000000Z", "direction": 1, "intensity": 1,
                "hmm_state": 0, "data": {"close": 1.05, "action_index": 1, "virtual_pnl": 1.5}}]  # newest first
    v.load_history(trades, signals)
    v.load_events([{"timestamp": "2026-12-07T00:01:00.000000Z", "severity": "INFO", "event_type": "SESSION_START"},
                   {"timestamp": "2026-12-07T00:02:00.000000Z", "severity": "CRITICAL", "event_type": "ALERT",
                    "source": "orchestrator", "message": "halted", "data": {"kind": "halted"}}])
    snap = v.snapshot(0.0)
    assert snap["session"]["id"] == "s1" and snap["account"]["start_balance"] == 1000.0
    # the points as the session went: the paper close at the second bar, the real one after it (the last point
    # takes the figures known now)
    assert snap["curve"] == [[0, 1488362400, 1000.0, 1001.5], [1, 1488366000, 996.5, 1002.0]]
    assert snap["symbols"]["EURUSD"]["virtual"] == "FLAT" and snap["symbols"]["EURUSD"]["close"] == 1.06
    assert [(a["kind"], a["halt"]) for a in snap["alerts"]] == [("halted", True)]



def test_a_close_heard_before_the_history_is_counted_once_and_live_points_follow_the_stored_ones():
    v = Dashboard()
    t_close = 1488369602.0  # 2017-03-01T12:00:02Z
    v.apply(messages.PositionClosed(7, "EURUSD", 1, 0.1, 1.1, 1.2, -3.0, 0, -0.5, -3.5, t_close, "CLIENT", False), 1.0)
    v.apply(messages.PaperTrade("late", "EURUSD", 1, 1, 0, 0, 1.1, 1.2, 4.0, 1.0, 0.1), 2.0)  # not in the store yet
    v.apply(signal(1488369600), 3.0)  # a live bar after the stored ones
    v.load_session({"session_id": "s1", "start_time": "2017-03-01T00:00:00.000000Z", "initial_balance": 100.0})
    v.load_history([{"id": "c", "symbol": "EURUSD", "action": "CLOSE", "is_paper": False, "pnl": -3.5,
                     "timestamp": "2017-03-01T12:00:02.000000Z", "position_id": "7"}],
                   [{"symbol": "EURUSD", "bar_time": "2017-03-01T11:00:00.000000Z", "direction": 0, "data": {}}])
    snap = v.update(4.0)
    assert snap["full"] is True  # the curve was rebuilt: browsers get it whole
    assert [p[:2] for p in snap["curve"]] == [[0, 1488366000], [1, 1488369600]]
    row = snap["symbols"]["EURUSD"]
    assert (row["real_pnl"], row["real_trades"], row["paper_pnl"], row["paper_trades"]) == (-3.5, 1, 4.0, 1)
    assert v.update(5.0)["full"] is False


def test_a_catch_up_run_gives_a_point_per_bar_as_single_signals_would():
    one, run = Dashboard(), Dashboard()
    for v in (one, run):
        v.apply(messages.AccountUpdate(10_000.0, 10_000.0, 0, 0, "USD"), 1.0)
    signals = [signal(EPOCH + 3600 * i, 1 if i else 0, 1 if i else 0, vpnl=float(i)) for i in range(4)]
    for s in signals:
        one.apply(s, 2.0)
    run.apply(messages.SignalRun("EURUSD", signals), 2.0)
    assert run.snapshot(3.0)["curve"] == one.snapshot(3.0)["curve"]
    assert len(run.snapshot(3.0)["curve"]) == 4
    assert run.row("EURUSD").bar_time == EPOCH + 3 * 3600
