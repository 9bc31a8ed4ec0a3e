"""The notifier in the whole system under the real supervisord (deploy/supervisord.conf's `notifier` program),
against a local webhook (http.server in a thread, real sockets): an external close (a person closing a position
at the simulator) and a watchdog halt arrive exactly once each, after an outage of the endpoint (503 answers and
answers that never come) that only delays them, in the order heard; a kill -9 of the notifier during the outage
loses nothing and one after a 2xx sends nothing again; the session's summary arrives at `oracle ctl stop`."""

from __future__ import annotations

import os
import signal
import sqlite3
from pathlib import Path
from types import SimpleNamespace

import pytest
from harness import Home, wait_for
from system.trading_rig import ManualClient
from webhook_stub import Webhook

from services.connector.sim.control import control

pytestmark = pytest.mark.slow

URL_ENV = "NOTIFIER_TEST_WEBHOOK_URL"  # not ORACLE_*: the harness passes the test's environment on without those


class NotifiedHome(Home):
    def __init__(self, root: Path, url: str, overlay: dict):
        self.url = url
        super().__init__(root, overlay)

    @property
    def env(self) -> dict[str, str]:
        return {**super().env, URL_ENV: self.url}


@pytest.fixture(scope="module")
def system(tmp_path_factory):
    hook = Webhook()
    overlay = {
        "notifier": {"sink": "webhook", "webhook_url_env": URL_ENV, "interval_s": 0.3, "retry_initial_s": 0.2,
                     "retry_max_s": 0.8, "timeout_s": 2.0, "store_poll_s": 1.0},
        "broker": {"sim": {"speed": 0}},  # a manual clock: the market stays where the test acts
        # a second restart of a service within the window halts; a busy machine's late heartbeat restarts nothing
        "orchestrator": {"restart_limit": 1, "heartbeat_timeout_s": 10.0, "step_timeout_s": 60},
    }
    home = NotifiedHome(tmp_path_factory.mktemp("notify"), hook.url, overlay)
    home.start_supervisord()
    try:
        home.wait_state("RUNNING", timeout=40)
        yield home, hook
    finally:
        home.close()
        hook.close()


def notifier_db(home: Home) -> Path:
    cfg = home.config()
    return cfg.path(cfg.data_dir) / cfg.notifier.db_file


def heard(home: Home) -> list[tuple[str, str, str | None]]:
    """(id, kind, message id) of every notice the notifier recorded, in the order heard."""
    db = notifier_db(home)
    if not db.exists():
        return []
    conn = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True)
    try:
        return conn.execute("SELECT id, kind, message_id FROM notices ORDER BY n").fetchall()
    finally:
        conn.close()


def all_sent(home: Home) -> bool:
    conn = sqlite3.connect(f"{notifier_db(home).resolve().as_uri()}?mode=ro", uri=True)
    try:
        waiting = conn.execute("SELECT count(*) FROM notices WHERE message_id IS NULL").fetchone()[0]
        pending = conn.execute("SELECT count(*) FROM messages WHERE sent_at IS NULL").fetchone()[0]
    finally:
        conn.close()
    return waiting == 0 and pending == 0


def external_close(home: Home) -> int:
    """A person opens and closes a position at the simulator (the cTrader app): the connector reports the close as
    external. The position's ticket."""
    cfg = home.config()
    sim = SimpleNamespace(port=cfg.broker.sim.port, cert=cfg.path(cfg.data_dir) / cfg.broker.sim.cert_file)
    control(cfg.broker.sim.control_port, "advance", ticks=1)  # a quote to trade at
    person = ManualClient(sim)
    opened = person.open(1, 0.01, "by-hand")
    assert opened.success, opened
    assert person.close(opened.ticket).success
    return opened.ticket


def kill_9(home: Home, program: str, restarted: bool = True) -> None:
    """SIGKILL the program; ``restarted``: wait until supervisord runs a new process of it (not for a kill that
    halts the system: the orchestrator may stop the new process before a poll could see its pid)."""
    old = home.pid_of(program)
    assert old
    os.kill(old, signal.SIGKILL)
    if restarted:
        wait_for(lambda: home.pid_of(program) not in (0, old), 20, f"supervisord to restart {program}")


def test_outage_delays_a_halt_and_an_external_close_which_then_arrive_once_each_in_order(system):
    home, hook = system
    hook.answer = 503
    ticket = external_close(home)
    restarts = home.status()["services"]["paper"]["restarts"]
    kill_9(home, "paper")
    wait_for(lambda: (lambda s: s["system"] == "HALTED" or s["services"]["paper"]["restarts"] > restarts)(
        home.status()), 30, "the orchestrator to count paper's restart")
    if home.system_state() != "HALTED":
        kill_9(home, "paper", restarted=False)  # the second restart within the window: HALTED
    home.wait_state("HALTED", timeout=20)
    kinds = wait_for(lambda: (lambda k: k if {"external_close", "alert.halted"} <= k else None)(
        {kind for _, kind, _ in heard(home)}), 20, "the notifier to record the close and the halt")
    assert hook.acked() == []
    wait_for(lambda: hook.failed() >= 2, 20, "the notifier to try the endpoint again")
    hook.answer = None  # answers that never come: no answer is no acknowledgement either
    wait_for(lambda: hook.failed() >= 3, 20, "a POST without an answer")
    kill_9(home, "notifier")  # pending messages are on disk: nothing is lost
    hook.answer = 200

    wait_for(lambda: all_sent(home), 30, "every notice sent once the endpoint is back")
    acked = hook.acked_notices()
    ids = [n["id"] for n in acked]
    assert len(ids) == len(set(ids)), f"a notice acknowledged twice: {ids}"
    order = {i: n for n, (i, _, _) in enumerate(heard(home))}
    assert [order[i] for i in ids] == sorted(order[i] for i in ids), "not sent in the order heard"
    closes = [n for n in acked if n["kind"] == "external_close"]
    assert [c["data"]["ticket"] for c in closes] == [ticket]
    halts = [n for n in acked if n["kind"] == "alert.halted"]
    assert len(halts) == 1 and "HALTED" in halts[0]["text"] and "paper" in halts[0]["text"]
    assert kinds >= {"external_close", "alert.halted"}
    message_ids = [body["id"] for body in hook.acked()]
    assert len(message_ids) == len(set(message_ids))


def test_a_kill_9_after_a_2xx_sends_nothing_again_and_the_summary_arrives_at_stop(system):
    home, hook = system
    wait_for(lambda: all_sent(home), 30, "everything sent")
    before = {n["id"] for n in hook.acked_notices()}
    posts_before = len(hook.posts)
    kill_9(home, "notifier")
    ticket = external_close(home)
    wait_for(lambda: any(n["kind"] == "external_close" and n["data"]["ticket"] == ticket
                         for n in hook.acked_notices()), 20, "the new close notified")
    after = [n["id"] for body in (b for _, b in hook.posts[posts_before:]) for n in body["notices"]]
    assert not before & set(after), "a notice acknowledged before the kill was sent again"

    res = home.oracle("ctl", "stop")
    assert res.returncode == 0, res.stderr
    home.supervisord.wait(60)
    summaries = [n for n in hook.acked_notices() if n["kind"] == "session_summary"]
    assert len(summaries) == 1, summaries
    assert summaries[0]["text"].startswith("INFO session ") and "real " in summaries[0]["text"]
    ids = [n["id"] for n in hook.acked_notices()]
    assert len(ids) == len(set(ids))
