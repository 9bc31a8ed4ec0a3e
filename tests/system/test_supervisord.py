"""The whole process tree under the real supervisord, with the repository's deploy/supervisord.conf, one boot
shared by the module's tests (in file order; the last one stops it): ctl status, kill -9 and freeze healed, the
tap across a restart, the dashboard, every file the system made private, then the ordered stop.

The dashboard (`oracle web`, supervisord's program `web`) is checked in a real headless Chromium (Debian's
/usr/bin/chromium, which scripts/test.sh installs, driven by Playwright from the dev extra): the page shows the services
(with the restarts of the kills before) and the symbol, and the equity curve grows as the simulator's bars are
replayed. `ORACLE_WEB_SCREENSHOT=docs/dashboard.png` also saves a screenshot after 60 bars (the README's)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from harness import VENV, Home, wait_for

from common import config, messages
from services.connector.sim.control import control

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


CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOT = os.environ.get("ORACLE_WEB_SCREENSHOT")
BARS = 60 if SCREENSHOT else 6


@pytest.fixture(scope="module")
def browser():
    """Debian's chromium, headless, driven by Playwright (no browser download)."""
    if not CHROMIUM.exists():
        message = "no /usr/bin/chromium: ./scripts/test.sh installs it (apt-get, as root)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{message}; CI=true requires the dashboard's browser test")
        pytest.skip(message)
    playwright = pytest.importorskip("playwright.sync_api")
    with playwright.sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


def signals_sent(home: Home) -> int:
    return home.status_of("preditor")["models"]["EURUSD"]["signals"]


def test_the_dashboard_shows_the_system_and_the_equity_curve_grows_with_the_bars(system, browser):
    home = system
    cfg = home.config()
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.goto(f"http://127.0.0.1:{cfg.web.port}/")

    # the services, as the orchestrator and their heartbeats say, and the demo's symbol
    for service in config.SERVICES:
        page.wait_for_selector(f'#services tr[data-service="{service}"]', timeout=20_000)
    status = wait_for(lambda: running_with(home, lambda s: True), 30, "RUNNING")
    wait_for(lambda: page.text_content("#system") == "RUNNING", 10,
             f"the page to say RUNNING (it says {page.text_content('#system')})")
    page.wait_for_selector('#symbols tr[data-symbol="EURUSD"]', timeout=20_000)
    # the restarts of the kills above, counted by the web from the heartbeats' new epochs as the orchestrator does
    rows = page.eval_on_selector_all("#services tbody tr", "rows => rows.map(r => [r.dataset.service, "
                                     "r.children[1].textContent, r.children[6].textContent])")
    assert rows == [[name, "RUNNING", str(status["services"][name]["restarts"] if name != "orchestrator" else "-")]
                    for name in sorted(config.SERVICES)], rows

    # the equity curve: one point per bar, real and paper, growing as the simulator closes bars
    control(cfg.broker.sim.control_port, "pause")  # the replay's bars one at a time, by the test
    try:
        before = page.evaluate("window.dashboard.points.length")
        for _ in range(BARS):
            sent = signals_sent(home)
            control(cfg.broker.sim.control_port, "advance", bars=1)
            wait_for(lambda s=sent: signals_sent(home) > s, 30, "the bar's signal")
    finally:
        control(cfg.broker.sim.control_port, "resume")
    wait_for(lambda: page.evaluate("window.dashboard.points.length") >= before + BARS, 20, "a point per bar")
    points = page.evaluate("window.dashboard.points")
    assert [p[1] for p in points] == sorted({p[1] for p in points})  # one per bar time, in order
    last = points[-1]
    assert last[2] is not None and last[3] is not None  # real and paper equity both marked
    assert page.get_attribute("#chart", "data-points") == str(len(points))
    assert page.eval_on_selector_all("#chart canvas", "c => c.length") >= 1  # uPlot drew it
    row = page.eval_on_selector('#symbols tr[data-symbol="EURUSD"]', "r => [...r.children].map(c => c.textContent)")
    assert row[3] != "-" and row[5] in ("FLAT", "LONG1", "LONG2", "LONG3", "SHORT1", "SHORT2", "SHORT3"), row
    assert not errors, errors  # no script error, nothing the page's CSP refused
    if SCREENSHOT:
        page.screenshot(path=SCREENSHOT, full_page=True)
    page.close()


def test_a_late_dashboard_page_gets_the_whole_view_at_once(system, browser):
    home = system
    page = browser.new_page()
    page.goto(f"http://127.0.0.1:{home.config().web.port}/")
    wait_for(lambda: page.evaluate("window.dashboard.points.length") >= BARS, 20, "the curve at once")
    session = home.request("persistence", "query", messages.QueryArgs("sessions", {"status": "RUNNING"}, 1))
    assert page.evaluate("window.dashboard.last.session.id") == session.records[0]["session_id"]
    page.close()


PROBE = """
import sys, zmq
from common import bus, config, messages
cfg = config.load()
req = bus.Requester(zmq.Context.instance(), cfg.endpoint("persistence", "rep"), "probe", 3000)
print(req.call("query", messages.QueryArgs("sessions", {}, 1)).count)
try:
    req.call("write", messages.WriteArgs({"events": []}))
except bus.RequestFailed as exc:
    print(exc.code, exc.message)
"""


def test_the_web_role_reads_the_store_and_may_not_write(system):
    home = system
    env = {**home.env, "SUPERVISOR_PROCESS_NAME": "web"}  # what supervisord sets in the web program's environment
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, cwd=home.root, capture_output=True, text=True,
                         timeout=30)
    assert out.returncode == 0, out.stderr
    count, refusal = out.stdout.splitlines()
    assert int(count) == 1
    assert refusal.startswith("forbidden 'write' may be called by connector, executor, operator, orchestrator, "
                              "paper, persistence, preditor, not by web (pid "), refusal


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
    assert stopped == ["web", "orchestrator", "preditor", "executor", "paper", "persistence", "connector", "sim-broker"]
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
