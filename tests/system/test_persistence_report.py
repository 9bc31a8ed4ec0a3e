"""The whole system (real processes, the simulator), stopped by the operator; then `oracle report` reads the
sessions, trades and events the persistence service recorded."""

from __future__ import annotations

import json

import pytest
from harness import Home, wait_for

from common import config

WORKERS = list(config.WORKERS)


@pytest.fixture
def home(tmp_path):
    h = Home(tmp_path, {"persistence": {"heartbeat_interval_s": 1.0}})
    yield h
    h.close()


def report(home: Home, what: str, *args: str) -> list[dict]:
    res = home.oracle("report", what, "--format", "json", "--limit", "0", *args)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def test_run_stop_and_report(home):
    for service in ["orchestrator", *WORKERS]:
        home.start(service)
    home.wait_state("RUNNING", timeout=60)
    status = wait_for(lambda: (lambda s: s if s.get("session") else None)(home.status_of("persistence")), 10,
                      "a session")
    sid = status["session"]["session_id"]
    assert status["session"]["initial_balance"] == home.config().broker.sim.balance  # from the connector
    wait_for(lambda: home.status_of("persistence")["progress"].get("session_heartbeats", 0) >= 2, 10,
             "session heartbeats")

    # persistence killed mid-run and started again: the orchestrator replays its steps, the session is resumed
    # (what the services handed over meanwhile waited in their outboxes)
    home.kill("persistence")
    home.start("persistence")
    wait_for(lambda: (lambda s: s if s["system"] == "RUNNING" and s["services"]["persistence"]["restarts"] == 1
                      and "persistence.session" in s["services"]["persistence"]["steps"] else None)(home.status()),
             30, "persistence back with its steps")
    again = home.status_of("persistence")["session"]
    assert again["session_id"] == sid and again["recovered_count"] == 1

    res = home.oracle("ctl", "stop")
    assert res.returncode == 0, res.stderr
    wait_for(lambda: all(p.poll() is not None for p in home.procs.values() if p.args[-1] != "--from-config"), 40,
             "every process stopped")

    sessions = report(home, "sessions")
    assert [s["session_id"] for s in sessions] == [sid]
    s = sessions[0]
    assert s["status"] == "STOPPED" and s["end_reason"] == "MANUAL" and s["final_balance"] is not None
    events = report(home, "events")
    types = {e["event_type"] for e in events}
    assert {"SESSION_STARTED", "SESSION_ENDED", "SESSION_SUMMARY", "SYSTEM_STATE"} <= types
    assert "STOPPING" in types and "RESTART" in types  # the orchestrator's lifecycle events, through its outbox
    assert "SESSION_RECOVERED" in types
    assert all(e["session_id"] == sid for e in events if e["event_type"].startswith("SESSION_"))
    trades = report(home, "trades")
    assert all(t["session_id"] == sid for t in trades)
    real = [t for t in trades if not t["is_paper"]]
    assert s["total_trades"] == len({t["position_id"] for t in real if t["action"] != "OPEN"})
    table = home.oracle("report", "sessions")
    assert table.returncode == 0 and sid in table.stdout
