"""The notifier's loop steps on real parts (a PUB socket publishing alerts, its SUB, its SQLite, a local HTTP
endpoint), its clock the test's: a burst is folded into one message per interval, an endpoint answering 503 delays
it with the backoff, nothing is lost or sent twice, messages leave in order; a restarted notifier resends only what
was not acknowledged."""

from __future__ import annotations

import time

import pytest
import zmq
from webhook_stub import Webhook

from common import bus, config, messages
from services.notifier.service import Notifier
from services.notifier.sinks import sink_from
from services.notifier.store import NotifierStore


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def rig(tmp_path):
    hook = Webhook()
    cfg = config.Config.model_validate({
        "version": "2.0", "home": str(tmp_path), "run_dir": str(tmp_path / "run"),
        "notifier": {"sink": "webhook", "interval_s": 10, "retry_initial_s": 0.2, "retry_max_s": 1, "timeout_s": 2}})
    (tmp_path / "run").mkdir(mode=0o700)
    ctx = zmq.Context()
    pub = bus.Publisher(ctx, cfg.endpoint("orchestrator", "pub"), "orchestrator", bus.new_epoch())
    clock = Clock()
    made: list[Notifier] = []

    def notifier() -> Notifier:
        n = Notifier(cfg, sink_from(cfg, {"ORACLE_WEBHOOK_URL": hook.url}),
                     NotifierStore(tmp_path / "notifier.db"), clock)
        made.append(n)
        return n

    yield cfg, pub, hook, clock, notifier
    for n in made:
        n.sub.close()
        n.persistence.close()
        n.ctx.term()
    pub.close()
    ctx.term()
    hook.close()


def hear_all(n: Notifier, pub: bus.Publisher, count: int) -> None:
    """Drain the notifier's SUB until `count` notices are recorded."""
    deadline = time.monotonic() + 10
    while n.store.counts()["notices"] + n.counters["duplicates"] < count:
        assert time.monotonic() < deadline, n.store.counts()
        for received in n.sub.drain():
            n.hear(received)
        time.sleep(0.01)


def alert(pub: bus.Publisher, kind: str, severity: str = "warning", text: str = "") -> None:
    pub.publish(messages.alert_topic(kind), messages.Alert(kind, severity, text or f"{kind} happened", "paper"))


def test_a_burst_is_one_message_per_interval_delayed_not_lost_by_an_outage(rig):
    cfg, pub, hook, clock, notifier = rig
    n = notifier()
    deadline = time.monotonic() + 10
    while n.system_state != "RUNNING":  # the slow joiner: a state (no notice) is published until heard
        assert time.monotonic() < deadline
        pub.publish(messages.SYS_STATE_TOPIC, messages.SysState("RUNNING", time.time_ns()))
        time.sleep(0.02)
        for received in n.sub.drain():
            n.hear(received)
    alert(pub, "halted", "critical", "system HALTED: paper: 2 restarts in 60 s")
    hear_all(n, pub, 1)
    hook.answer = 503
    n.form_if_due(clock.now)
    assert not n.send_if_due(clock.now)  # 503: kept, retried after 0.2 s
    for i in range(30):
        alert(pub, f"k{i % 3}", text=f"burst {i}")
    alert(pub, "info_only", "info")  # not chosen: no notice
    hear_all(n, pub, 31)

    clock.now += 0.1
    n.form_if_due(clock.now)
    assert not n.send_if_due(clock.now) and hook.failed() == 1  # not due yet: no POST
    clock.now += 0.15
    assert not n.send_if_due(clock.now) and hook.failed() == 2
    hook.answer = 200
    clock.now += 0.5
    assert n.send_if_due(clock.now)
    n.form_if_due(clock.now)
    assert n.store.pending() is None and n.store.counts()["waiting"] == 30  # the interval: folded into the next
    clock.now = 1010.0
    n.form_if_due(clock.now)
    assert n.send_if_due(clock.now)

    first, second = hook.acked()
    assert first["count"] == 1 and first["text"].startswith("CRITICAL halted (paper): system HALTED")
    assert second["count"] == 30 and second["text"].splitlines() == [
        "Oracle Trader: 30 notifications",
        "10x alert.k0 (warning), the last: WARNING k0 (paper): burst 27",
        "10x alert.k1 (warning), the last: WARNING k1 (paper): burst 28",
        "10x alert.k2 (warning), the last: WARNING k2 (paper): burst 29"]
    assert [x["text"].rsplit(": ", 1)[1] for x in second["notices"]] == [f"burst {i}" for i in range(30)]
    ids = [x["id"] for body in hook.acked() for x in body["notices"]]
    assert len(ids) == len(set(ids)) == 31
    assert [body["id"] for answer, body in hook.posts] == [first["id"]] * 3 + [second["id"]]  # the same id resent

    # a restart (the same store): nothing acknowledged goes again; a message pending at a crash does, the same
    alert(pub, "late", "critical")
    hear_all(n, pub, 32)
    clock.now = 1020.0
    n.form_if_due(clock.now)
    posts = len(hook.posts)
    n.store.close()
    again = notifier()
    assert again.store.pending() is not None and again.store.pending().payload["notices"][0]["kind"] == "alert.late"
    assert again.send_if_due(clock.now) and again.store.pending() is None
    assert len(hook.posts) == posts + 1 and hook.posts[-1][1]["notices"][0]["kind"] == "alert.late"
