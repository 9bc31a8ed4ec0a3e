"""A permanent failure where the operator looks, as the operator meets it: `broker.type: ctrader` with no credentials
in the environment, under the real supervisord and ./scripts/run.sh, in a home laid out like a checkout.

One boot for every assertion: run.sh refuses to start it (the checks of check-config), then supervisord is started
the plain way (README) and run.sh, finding it running, says why it is not RUNNING; ctl status shows the cause; the
connector ran once and was not restarted."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess

import pytest
from harness import REPO, Home, wait_for

pytestmark = pytest.mark.slow

CREDENTIALS = ("CTRADER_CLIENT_ID", "CTRADER_CLIENT_SECRET", "CTRADER_ACCESS_TOKEN", "CTRADER_ACCOUNT_ID")
MISSING = ", ".join(CREDENTIALS) + " not set"


def checkout_like(home: Home) -> None:
    """What ./scripts/run.sh needs beside what Home lays out: the scripts, and what the bootstrap's stamp is made of
    (the .venv is this checkout's, installed: the bootstrap does nothing)."""
    (home.root / "scripts").mkdir()
    for script in ("run.sh", "bootstrap.sh"):
        shutil.copy(REPO / "scripts" / script, home.root / "scripts" / script)
    (home.root / "pyproject.toml").symlink_to(REPO / "pyproject.toml")
    (home.root / "common").symlink_to(REPO / "common")


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    for name in CREDENTIALS:
        mp.delenv(name, raising=False)
    h = Home(tmp_path_factory.mktemp("fail"), {"broker": {"type": "ctrader"}})
    checkout_like(h)
    try:
        yield h
    finally:
        if (h.root / "var" / "supervisor.sock").exists() and h.supervisord is None:
            h.supervisorctl("shutdown")  # a supervisord run.sh started (daemonized): not Home's to stop
        h.close()
        mp.undo()


def run_sh(home: Home) -> subprocess.CompletedProcess:
    return subprocess.run([str(home.root / "scripts" / "run.sh")], cwd=home.root, env=home.env, capture_output=True,
                          text=True, timeout=120)


def test_run_sh_refuses_to_start_naming_every_missing_variable(home):
    res = run_sh(home)
    assert res.returncode == 2, res.stdout + res.stderr
    assert MISSING in res.stderr and "(connector cannot start)" in res.stderr
    assert "not started: fix the configuration or the environment" in res.stderr
    assert not (home.root / "var" / "supervisor.sock").exists()  # nothing was started


@pytest.fixture(scope="module")
def started(home):
    """supervisord started the plain way, and run.sh run against it: what it printed."""
    home.start_supervisord()
    wait_for(lambda: (home.root / "var" / "supervisor.sock").exists(), 30, "supervisord's socket")
    return run_sh(home)


def test_run_sh_exits_non_zero_with_the_cause_once_started(started):
    assert started.returncode == 1, started.stdout + started.stderr
    assert "supervisord is already running for this checkout" in started.stdout
    assert f"system FAILED: connector: broker.type: ctrader needs the credentials: environment variables {MISSING}" \
        in started.stderr


def test_ctl_status_shows_the_program_failed_and_why(home, started):
    report = wait_for(lambda: (lambda r: r if r["system"] == "FAILED" else None)(
        json.loads(home.oracle("ctl", "status", "--json").stdout)), 30, "system FAILED in ctl status")
    connector = report["services"]["connector"]
    assert MISSING in connector["failure"] and report["failed_reason"].startswith("connector: broker.type: ctrader")
    assert connector["restarts"] == 0
    text = home.oracle("ctl", "status")
    assert "system FAILED" in text.stdout
    assert f"FAILED: connector: broker.type: ctrader needs the credentials: environment variables {MISSING}" \
        in text.stdout


def test_the_connector_ran_once_and_is_not_restarted(home, started):
    status = wait_for(lambda: (lambda out: out if "EXITED" in out else None)(home.supervisorctl("status", "connector")),
                      30, "the connector EXITED")
    assert "connector" in status and "FATAL" not in status and "BACKOFF" not in status
    # EXITED with an expected code: supervisord never starts it again (autorestart=unexpected, exitcodes=78)
    log = (home.root / "var" / "log" / "supervisord.log").read_text()
    assert log.count("spawned: 'connector'") == 1
    assert "exited: connector (exit status 78; expected)" in log
    assert "CTRADER_CLIENT_ID" in home.log("connector")  # said in its own log too, once
    assert home.log("connector").count("cannot start, and a restart cannot fix it") == 1


def test_top_shows_the_cause(home, started):
    res = home.oracle("top", "--seconds", "2")
    assert res.returncode == 0, res.stderr
    assert "FAILED: connector: broker.type: ctrader needs the credentials" in " ".join(res.stdout.split())


def test_the_simulator_is_not_started_for_a_real_broker(home, started):
    """supervisord's sim-broker program says so and exits 0 (EXITED, not restarted)."""
    wait_for(lambda: "EXITED" in home.supervisorctl("status", "sim-broker"), 20, "sim-broker EXITED")
    assert "the simulator is not started" in home.log("sim-broker")
    log = (home.root / "var" / "log" / "supervisord.log").read_text()
    assert log.count("spawned: 'sim-broker'") == 1  # not started again
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", home.config().broker.sim.port)) != 0  # nothing listens where it would
