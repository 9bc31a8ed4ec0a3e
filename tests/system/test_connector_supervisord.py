"""The connector and the simulator under the real supervisord (deploy/supervisord.conf), the replay running.

The simulator is supervisord's `sim-broker` program (`--from-config`: the same settings the connector reads);
here it replays ten H1 bars a wall second so a restart happens in the middle of a busy stream.
"""

from __future__ import annotations

import os
import signal

import pytest
from harness import Home, wait_for
from system.conntap import Tap

from common import messages
from services.connector.sim.control import control
from services.connector.sim.replay import parse_csv

pytestmark = pytest.mark.slow

SPEED = 36_000.0  # simulated seconds per wall second: 10 H1 bars a second


@pytest.fixture(scope="module")
def system(tmp_path_factory):
    home = Home(
        tmp_path_factory.mktemp("consup"),
        {"broker": {"sim": {"speed": SPEED}}, "executor": {"dry_run": True}},
    )
    home.start_supervisord()
    try:
        home.wait_state("RUNNING", timeout=60)
        yield home
    finally:
        home.close()


def bar_times(tap: Tap) -> list[int]:
    return [b.time for b in tap.bodies("bar.")]


def connected(home: Home, epoch: int | None = None) -> bool:
    s = home.status_of("connector", timeout_ms=3000)
    return bool(s["broker"]["connected"] and s["state"] == "RUNNING" and (epoch is None or s["epoch"] != epoch))


def repaired_union(home: Home, seen: list[int]) -> set[int]:
    """What a consumer ends with: the bars it saw plus the gaps it asked history for."""
    union = set(seen)
    for a, b in zip(seen, seen[1:], strict=False):
        if b - a > 3600:  # maybe a weekend, maybe a gap: history says which
            res = home.request("connector", "history", messages.HistoryArgs("EURUSD", "H1", since=a, until=b))
            union |= {row[0] for row in res.bars}
    return union


def expected_between(home: Home, first: int, last: int) -> list[int]:
    csv = parse_csv((home.config().path(home.config().broker.sim.csv)).read_text())
    return [b.time for b in csv if first <= b.time <= last]


def test_sim_broker_runs_under_supervisord_from_the_config(system):
    out = system.supervisorctl("status")
    assert any(line.split()[:2] == ["sim-broker", "RUNNING"] for line in out.splitlines()), out
    cfg = system.config()
    st = control(cfg.broker.sim.control_port, "status")
    assert st["speed"] == SPEED and st["port"] == cfg.broker.sim.port
    assert st["bar_index"] >= cfg.broker.sim.start_bar
    assert (system.root / "var" / "data" / cfg.broker.sim.state_file).exists()
    assert connected(system)


def test_connector_kill_9_mid_replay_no_missed_and_no_duplicate_bar(system):
    tap = Tap(system, ["bar.EURUSD.H1"])
    try:
        tap.wait(lambda g: len(g) >= 15, 30, "15 live bars")
        before = system.status_of("connector")
        os.kill(system.pid_of("connector"), signal.SIGKILL)
        wait_for(lambda: connected(system, before["epoch"]), 40, "the connector restarted and connected")
        n = len(tap.got)
        tap.wait(lambda g: len(g) >= n + 15, 30, "15 more bars after the restart")
        control(system.config().broker.sim.control_port, "pause")
        tap.poll(1.0)
        seen = bar_times(tap)
        assert len(seen) == len(set(seen)), "a bar was published twice"
        assert seen == sorted(seen)
        assert sorted(repaired_union(system, seen)) == expected_between(system, seen[0], seen[-1])
        after = system.status()["services"]["connector"]
        assert after["restarts"] >= 1 and after["state"] == "RUNNING"
    finally:
        control(system.config().broker.sim.control_port, "resume")
        tap.close()


def test_sim_broker_restart_continues_the_replay_and_the_connector_reconnects(system):
    tap = Tap(system, ["bar.EURUSD.H1", "conn.state"])
    try:
        tap.wait(lambda g: len(g) >= 5, 30, "5 live bars")
        ctl = system.config().broker.sim.control_port
        cursor = control(ctl, "status")["bar_index"]
        os.kill(system.pid_of("sim-broker"), signal.SIGKILL)
        tap.wait(
            lambda g: (
                [b.connected for b in (r.envelope.body for r in g) if isinstance(b, messages.ConnectionState)]
                == [False, True]
            ),
            60,
            "conn.state lost then restored",
        )
        assert control(ctl, "status")["bar_index"] >= cursor - 1  # continued from its state file, not the start
        n = len(bar_times(tap))
        tap.wait(lambda g: len([r for r in g if r.envelope.topic.startswith("bar.")]) >= n + 10, 30, "10 more")
        control(ctl, "pause")
        tap.poll(1.0)
        seen = bar_times(tap)
        assert len(seen) == len(set(seen)) and seen == sorted(seen)
        assert sorted(repaired_union(system, seen)) == expected_between(system, seen[0], seen[-1])
    finally:
        control(system.config().broker.sim.control_port, "resume")
        tap.close()
