"""What the operator sees (issue 17, items 2 and 3), from outside: the output of `oracle ctl status` and
`oracle top --once` run as a person would, on one system under the real supervisord (one boot for the module).

The models directory holds the bundled EURUSD H1 model and a GBPUSD M15 fixture model whose policy member was cut
out (its metadata is intact, so only the preditor's load can tell): the preditor refuses it, and that refusal is the
source of truth for the executor's and paper's symbols. A SHORT on GBPUSD opened at the broker (the connector's
order op, as a person's script would) is then an orphan the executor leaves alone, and a top started after it must
show it from the connector's book. The system is then made HALTED (paper killed more often than the restart limit
allows), the orchestrator is killed -9, and the restart counts and the HALTED reason must be the same after. Last,
`oracle ctl stop`: top says the system is down and `ctl status` says "not running" without asking anyone."""

from __future__ import annotations

import os
import signal
import time
import zipfile
from pathlib import Path

import pytest
from harness import REPO, Home, wait_for

from common import messages

pytestmark = pytest.mark.slow

FIXTURES = REPO / "tests" / "fixtures" / "models"
REFUSED = "GBPUSD_M15.zip"
OVERLAY = {"broker": {"sim": {"speed": 0}}, "connector": {"account_interval_s": 1.0},
           "orchestrator": {"restart_limit": 1}}  # two kills of paper halt the system


def corrupt_copy(source: Path, target: Path) -> None:
    """The model file without its policy member, the metadata (the zip comment) untouched."""
    with zipfile.ZipFile(source) as src, zipfile.ZipFile(target, "w") as out:
        for item in src.infolist():
            if "policy" not in item.filename:
                out.writestr(item, src.read(item))
        out.comment = src.comment


@pytest.fixture(scope="module")
def system(tmp_path_factory):
    pytest.importorskip("torch")
    root = tmp_path_factory.mktemp("operator_view")
    models = root / "models_under_test"
    models.mkdir()
    (models / "EURUSD_H1.zip").symlink_to(REPO / "models" / "EURUSD_H1.zip")
    corrupt_copy(FIXTURES / REFUSED, models / REFUSED)
    home = Home(root, {**OVERLAY, "preditor": {"models_dir": str(models)}})
    home.start_supervisord()
    try:
        home.wait_state("RUNNING", timeout=120)
        yield home
    finally:
        home.close()


def ctl_status(home: Home) -> str:
    res = home.oracle("ctl", "status")
    assert res.returncode == 0, (res.stdout, res.stderr)
    return res.stdout


def top_once(home: Home) -> str:
    res = home.oracle("top", "--once")
    assert res.returncode == 0, (res.stdout, res.stderr)
    return res.stdout


def test_ctl_status_shows_the_refused_model_and_its_alert(system):
    out = ctl_status(system)
    refused = [line for line in out.splitlines() if line.startswith("model refused:")]
    assert len(refused) == 1 and REFUSED in refused[0], out
    assert "critical model_refused (preditor)" in out  # the alert, kept by the orchestrator


def test_the_refused_symbol_gets_no_executor_entry_and_no_paper_account(system):
    executor = system.status_of("executor")
    assert executor["modelled"] == ["EURUSD"]
    assert "GBPUSD" not in executor["symbols"]
    assert "GBPUSD" not in (system.root / "config" / "executor_symbols.json").read_text()
    assert sorted(system.status_of("paper")["accounts"]) == ["EURUSD"]


def test_a_late_top_shows_a_short_at_the_broker_with_equity_balance_and_the_refusal(system):
    opened = system.request("connector", "order_open",
                            messages.OrderOpenArgs("GBPUSD", -1, 0.01, "operator-view-short-1"), timeout_ms=10_000)
    assert opened.success, opened
    out = top_once(system)  # started after the fill: the position comes from the connector's book
    row = next((line for line in out.splitlines() if "GBPUSD" in line), "")
    assert "SHORT" in row and "0.01" in row, out
    assert "balance" in out and "equity" in out
    assert f"model refused: {REFUSED}" in out
    assert "model_refused" in out  # the alert from before the view started
    assert "0 trades closed" in out

    # closed: the running session's row counts it at once (not only when the session ends), and top shows it
    closed = system.request("connector", "order_close", messages.OrderCloseArgs(opened.ticket), timeout_ms=10_000)
    assert closed.success, closed
    session = wait_for(lambda: (lambda r: r if r and r[0]["total_trades"] == 1 else None)(
        system.request("persistence", "query", messages.QueryArgs("sessions", {}, 1)).records), 30,
        "the running session's totals")[0]
    assert session["status"] == "RUNNING" and session["total_pnl"] < 0  # spread and commission of a flat minute
    out = top_once(system)
    assert f"1 trades closed, realized PnL {session['total_pnl']:.2f}" in out, out
    assert "SHORT" not in next((line for line in out.splitlines() if "GBPUSD" in line), "")


def test_restart_counts_and_the_halted_reason_survive_an_orchestrator_kill(system):
    limit = system.config().orchestrator.restart_limit
    for n in range(1, limit + 2):  # one restart more than allowed within the window: HALTED
        pid = wait_for(lambda: system.pid_of("paper"), 30, "paper running")
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda n=n: (lambda s: s["services"]["paper"]["restarts"] >= n or s["system"] == "HALTED")(
            system.status()), 30, f"restart {n} counted (or supervisord gave up: HALTED)")
    before = wait_for(lambda: (lambda s: s if s["system"] == "HALTED" else None)(system.status()), 30, "HALTED")
    stopped = wait_for(lambda: (lambda s: s if s["services"]["paper"]["state"] == "STOPPED" else None)(
        system.status()), 30, "paper shown STOPPED")
    assert stopped["services"]["paper"]["pid"] == 0  # not WAITING with a pid that no longer exists
    out = ctl_status(system)
    assert "STOPPED" in next(line for line in out.splitlines() if " paper " in line)
    counts = {s: v["restarts"] for s, v in before["services"].items() if s != "orchestrator"}
    assert counts["paper"] >= limit

    orchestrator = system.pid_of("orchestrator")
    os.kill(orchestrator, signal.SIGKILL)
    after = wait_for(lambda: (lambda s: s if s["pid"] != orchestrator else None)(system.status()), 30,
                     "the orchestrator back")
    assert after["system"] == "HALTED"
    assert after["halted_reason"] == before["halted_reason"] and after["halted_reason"].startswith("paper:")
    assert {s: v["restarts"] for s, v in after["services"].items() if s != "orchestrator"} == counts
    assert "model_refused" in "".join(after["alerts"])  # the alerts it had heard, kept too


def test_after_stop_top_says_system_down_and_status_not_running_at_once(system):
    res = system.oracle("ctl", "stop")
    assert res.returncode == 0, (res.stdout, res.stderr)
    assert system.supervisord is not None
    system.supervisord.wait(60)
    top = system.oracle("top", "--once")
    assert top.returncode == 3 and top.stdout.startswith("system down: supervisord is not running"), top.stdout
    started = time.monotonic()
    status = system.oracle("ctl", "status")
    took = time.monotonic() - started
    print(f"oracle ctl status with the system down: {took:.2f} s (the whole CLI process)")
    assert status.returncode == 3 and status.stdout.startswith("system not running:"), status.stdout
    assert "not answering" not in status.stderr + status.stdout  # no request sent: no timeout waited
