"""The whole process tree under the real supervisord, with the repository's deploy/supervisord.conf, one boot
shared by the module's tests (in file order; the last one stops it): ctl status, kill -9 and freeze healed, the
tap across a restart, every file the system made private, then the ordered stop."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import stat
import subprocess
import time

import pytest
from harness import VENV, Home, wait_for

from common import config

pytestmark = pytest.mark.slow

ALL = list(config.SERVICES)


@pytest.fixture(scope="module")
def system(tmp_path_factory):
    home = Home(tmp_path_factory.mktemp("sup"))
    # as scripts/run.sh starts it: under umask 077 (the conf's umask=077 holds only once supervisord daemonizes,
    # not with -n as here; every program sets its own anyway): test_every_file_the_system_makes_is_private
    old = os.umask(0o077)
    try:
        home.start_supervisord()
    finally:
        os.umask(old)
    try:
        home.wait_state("RUNNING", timeout=30)
        yield home
    finally:
        home.close()


def ctl_status(home: Home) -> dict:
    res = home.oracle("ctl", "status", "--json")
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def running_with(home: Home, check) -> dict | None:
    try:
        s = home.status()
    except Exception:
        return None
    return s if s["system"] == "RUNNING" and check(s) else None


def test_runs_and_ctl_status_lists_the_six_processes(system):
    status = ctl_status(system)
    assert status["system"] == "RUNNING"
    assert sorted(status["services"]) == sorted(ALL)
    for name in ALL:
        assert status["services"][name]["pid"] == system.pid_of(name), name
        assert status["services"][name]["state"] == "RUNNING"
    assert status["supervisor"] == "ok"


@pytest.mark.parametrize("victim", ALL)
def test_kill_9_of_any_service_heals(system, victim):
    before = system.status()["services"]
    old_pid = system.pid_of(victim)
    os.kill(old_pid, signal.SIGKILL)
    wait_for(lambda: system.pid_of(victim) not in (0, old_pid), 15, f"supervisord to respawn {victim}")
    status = wait_for(
        lambda: running_with(system, lambda s: s["services"][victim]["pid"] == system.pid_of(victim)),
        20,
        f"RUNNING again after kill -9 {victim}",
    )
    entry = status["services"][victim]
    assert entry["epoch"] > before[victim]["epoch"]
    if victim != "orchestrator":
        assert entry["restarts"] == before[victim]["restarts"] + 1
        hello = [e for e in status["boot_log"] if e["event"] == "restart" and e["service"] == victim]
        assert hello and hello[-1]["epoch"] == entry["epoch"]


def test_frozen_service_is_restarted_by_the_watchdog(system):
    cfg = system.config()
    old_pid = system.pid_of("executor")
    os.kill(old_pid, signal.SIGSTOP)
    t0 = time.monotonic()
    try:
        wait_for(
            lambda: system.pid_of("executor") not in (0, old_pid), 20, "the watchdog to restart the frozen executor"
        )
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(old_pid, signal.SIGCONT)
    detected_in = time.monotonic() - t0
    assert detected_in < cfg.orchestrator.heartbeat_timeout_s + 4.0, detected_in
    status = wait_for(lambda: running_with(system, lambda s: True), 20, "RUNNING after the watchdog restart")
    assert status["services"]["executor"]["last_restart_reason"].startswith("no heartbeat for")


def test_tap_prints_heartbeats_and_states_across_a_publisher_restart(system):
    tap = subprocess.Popen(
        [str(VENV / "bin" / "oracle"), "tap", "hb.preditor", "sys.state", "--json", "--seconds", "10"],
        env=system.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(2.5)
    os.kill(system.pid_of("preditor"), signal.SIGKILL)
    out, err = tap.communicate(timeout=30)
    lines = [json.loads(line) for line in out.splitlines()]
    hb = [m for m in lines if m["topic"] == "hb.preditor"]
    states = [m for m in lines if m["topic"] == "sys.state"]
    assert len({m["epoch"] for m in hb}) == 2, err
    assert any(m["delivery"] == "new_epoch" for m in hb)
    assert {m["body"]["state"] for m in states} >= {"RUNNING"}
    assert any(m["body"]["state"] != "RUNNING" or "preditor" in m["body"]["event"] for m in states)


def test_every_file_the_system_makes_is_private(system):
    """Every file the system made so far (supervisord's log, each program's log, the store, the state files and
    journals, those rewritten by the restarts above included) is its user's alone, directories 0700."""
    var = system.root / "var"
    cfg = system.config()
    expected = [var / "log" / "supervisord.log", cfg.path(cfg.persistence.sqlite_path),
                cfg.path(cfg.data_dir) / cfg.connector.state_file]
    assert all(p.exists() for p in expected), expected
    assert any(p.name.startswith("connector") for p in (var / "log").iterdir())  # the programs' logs
    wide = []
    for root, dirs, files in os.walk(var):
        for name in (*dirs, *files):
            path = os.path.join(root, name)
            try:
                st = os.lstat(path)
            except FileNotFoundError:  # a temporary file renamed into place meanwhile (the system is running)
                continue
            if stat.S_ISSOCK(st.st_mode) or stat.S_ISLNK(st.st_mode):
                continue
            if stat.S_IMODE(st.st_mode) & 0o077:
                wide.append(f"{path} {stat.S_IMODE(st.st_mode):o}")
    assert wide == []


def test_ctl_stop_shuts_everything_down_in_order(system):
    pids = {name: system.pid_of(name) for name in ALL}
    res = system.oracle("ctl", "stop")
    assert res.returncode == 0, res.stderr
    system.supervisord.wait(40)
    for _name, pid in pids.items():
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    log = (system.root / "var" / "log" / "supervisord.log").read_text()
    stopped = [line.split("stopped: ")[1].split()[0] for line in log.splitlines() if "stopped: " in line]
    assert stopped == ["orchestrator", "preditor", "executor", "paper", "persistence", "connector", "sim-broker"]
    orch_log = system.log("orchestrator")
    assert (
        orch_log.index("executor.stop")
        < orch_log.index("persistence.close_session")
        < orch_log.index("connector.disconnect")
    )


def test_a_service_that_crashes_at_every_start_halts_the_system(tmp_path):
    # The paper's REP endpoint is a TCP port that something else holds: it cannot bind, at every start.
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen()
    port = blocker.getsockname()[1]
    home = Home(tmp_path, {"endpoints": {"paper": {"rep": f"tcp://127.0.0.1:{port}"}}})
    home.start_supervisord()
    try:
        status = wait_for(
            lambda: (lambda s: s if s["system"] == "HALTED" else None)(home.status()), 60, "system HALTED"
        )
        assert status["halted_reason"].startswith("paper: ")
        assert any(e["event"] == "halt" and e["service"] == "paper" for e in status["boot_log"])
        time.sleep(3)
        states = home.supervisorctl("status")
        assert "paper" in states and "RUNNING" not in [ln.split()[1] for ln in states.splitlines() if "paper" in ln]
        assert "cannot bind paper endpoints" in home.log("paper")
    finally:
        home.close()
        blocker.close()
