"""The broker refuses our credentials: the system says so and waits for a person, who hands in a new token pair
without restarting anything. Real processes (orchestrator and every worker, the simulator on a manual clock)."""

from __future__ import annotations

import stat
import time

import pytest
from harness import Home, wait_for

from common import config, messages
from services.connector.ctrader.tokens import StoredTokens, TokenPair, TokenStore, fingerprint
from services.connector.sim.control import control

WHAT_TO_DO = "oracle broker-token"


def boot(home: Home, state: str = "RUNNING") -> None:
    home.start("orchestrator")
    for s in config.WORKERS:
        home.start(s)
    if state:
        home.wait_state(state, timeout=60)


def auth_issue(home: Home) -> str | None:
    return next((i for i in home.status()["issues"] if WHAT_TO_DO in i), None)


def hand_in(home: Home, sim_port: int) -> tuple[dict, str]:
    """What an operator does: a new pair from the broker's OAuth page, then `oracle broker-token`."""
    issued = control(sim_port, "issue_token")
    control(sim_port, "clear")
    res = home.oracle("broker-token", "--wait", "40", stdin=f"{issued['access_token']}\n{issued['refresh_token']}\n",
                      timeout=60)
    assert res.returncode == 0, res.stderr
    return issued, res.stdout


@pytest.fixture
def home(tmp_path):
    h = Home(tmp_path, {"broker": {"sim": {"speed": 0}}, "executor": {"dry_run": True}})
    yield h
    h.close()


def test_a_refused_refresh_is_degraded_with_what_to_do_and_a_pair_handed_in_heals_it(home):
    boot(home)
    sim = home.config().broker.sim.control_port
    connector = home.status()["services"]["connector"]
    control(sim, "refuse_refresh", count=1000)  # the refresh token was revoked at the broker
    control(sim, "expire_token")
    issue = wait_for(lambda: auth_issue(home), 30, "the reason among the system's issues")
    assert "refused" in issue and home.system_state() == "DEGRADED"  # not HALTED, not a restart storm
    status = home.oracle("ctl", "status")
    assert WHAT_TO_DO in status.stdout
    top = home.oracle("top", "--seconds", "3")
    assert WHAT_TO_DO in top.stdout
    alerts = home.request("persistence", "query", messages.QueryArgs("events", {}, 0), timeout_ms=5000).records
    assert any(r["event_type"] == "ALERT" and r["data"]["kind"] == "broker_auth" and r["severity"] == "CRITICAL"
               and WHAT_TO_DO in r["message"] for r in alerts)
    issued, said = hand_in(home, sim)
    assert "connected with the new token" in said
    home.wait_state("RUNNING", timeout=30)
    assert auth_issue(home) is None
    after = home.status()["services"]["connector"]
    assert (after["pid"], after["epoch"], after["restarts"]) == (connector["pid"], connector["epoch"], 0)
    path = home.root / "var" / "data" / "broker-tokens.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert TokenStore(path).load().pair.access_token == issued["access_token"]
    logs = "".join(home.log(s) for s in (*config.WORKERS, "orchestrator", "connector.sim"))
    for secret in (issued["access_token"], issued["refresh_token"], "sim-refresh"):
        assert secret not in logs  # tokens are never logged (a fingerprint is)
    assert fingerprint(issued["access_token"]) in home.status_of("connector")["broker"]["token"]


def test_dead_credentials_at_boot_wait_for_a_person_instead_of_a_restart_storm(home):
    # the token file holds a pair the broker no longer knows (its refresh token revoked): preferred to the
    # configured pair, which it replaced
    cfg = home.config()
    sim_pair = TokenPair(cfg.broker.sim.access_token, cfg.broker.sim.refresh_token)
    TokenStore(home.root / "var" / "data" / "broker-tokens.json").save(
        StoredTokens(TokenPair("dead-access", "dead-refresh", 4e9), fingerprint(sim_pair.access_token,
                                                                                 sim_pair.refresh_token), "refresh"))
    boot(home, state="")
    issue = wait_for(lambda: auth_issue(home), 60, "the reason among the system's issues")
    assert "refused" in issue
    step_timeout = cfg.orchestrator.step_timeout_s
    wait_for(lambda: home.status()["services"]["connector"].get("hb_age_s") is not None, 10, "connector heartbeats")
    time.sleep(step_timeout + 2)  # past the watchdog's step timeout: a step waiting for a person is not restarted
    st = home.status()
    assert st["system"] not in ("RUNNING", "HALTED") and st["services"]["connector"]["restarts"] == 0
    assert home.procs["connector"].poll() is None
    hand_in(home, cfg.broker.sim.control_port)
    home.wait_state("RUNNING", timeout=60)
