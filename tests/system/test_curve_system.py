"""The whole system with ``wire.curve: true`` over ipc: every socket CURVE, the services booted through their
handshakes and trading against the simulator; the operator's CLI talks with its own key; a peer whose key is not
in the keys directory gets nothing through, and its denied handshakes are counted in the service's status."""

from __future__ import annotations

import json
import os
import signal

import pytest
import zmq
from harness import Home, wait_for
from system.trading_rig import Listener, preditor_signals, trading_system

from common import bus, config, keys, messages, wire

N_BARS = 40


@pytest.fixture
def system(tmp_path):
    pytest.importorskip("torch")
    try:
        with trading_system(tmp_path, {"wire": {"curve": True}}) as (home, sim, listeners):
            cfg = home.config()
            keys.init(cfg.path(cfg.wire.keys_dir), keys.names(config.SERVICES))
            keys.secure_process(cfg, keys.OPERATOR)  # this test's own sockets: the operator's key
            yield home, sim, listeners
    finally:
        bus.plain()  # after the system is stopped (its stop requests go with the operator's key)


def test_the_system_trades_with_curve_and_refuses_an_unknown_key(system):
    home, sim, listeners = system
    signals = Listener(home, "preditor", ("signal.",))
    acks = Listener(home, "executor", ("ack.",))
    listeners += [signals, acks]
    for service in ("orchestrator", *config.WORKERS):
        home.start(service)
    home.wait_state("RUNNING", timeout=90)

    opened: list[messages.Ack] = []
    for _ in range(N_BARS):  # bar by bar until the bundled model has opened a position (it does on this stretch)
        before = preditor_signals(home)
        sim.advance_bar()
        wait_for(lambda b=before: preditor_signals(home) > b, 30, "the bar's signal")
        got = wait_for(lambda: (lambda g: g if len(g) == preditor_signals(home) else None)(
            [s for s in signals.poll() if isinstance(s, messages.Signal)]), 10, "every signal heard")
        opened = [a for a in acks.wait_ack(got[-1].bar_time, timeout=20) if a.details.get("action") == "OPEN"]
        if opened:
            break
    assert opened and all(a.status == "OK" for a in opened)
    assert any(not d["closing"] for d in sim.saved()["deals"])  # the orders reached the broker

    # kill -9: the new process makes its sockets anew, every peer's CURVE handshake with it is redone
    home.kill("executor")
    home.start("executor")
    wait_for(lambda: home.status()["services"]["executor"]["restarts"] == 1 and
             home.status()["services"]["executor"]["state"] == "RUNNING", 30, "the executor back")
    acks.wait_live()  # this SUB hears the new executor
    before = preditor_signals(home)
    sim.advance_bar()
    wait_for(lambda: preditor_signals(home) > before, 30, "the next bar's signal")
    last = wait_for(lambda: [s for s in signals.poll() if isinstance(s, messages.Signal)][before:], 10,
                    "the signal heard")[-1]
    assert acks.wait_ack(last.bar_time, timeout=20)  # the new executor heard it and answered

    # the operator's CLI, in its own process, with its own key
    res = home.oracle("ctl", "status", "--json")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["system"] == "RUNNING"
    tap = home.oracle("tap", "hb.executor", "--count", "1", "--seconds", "20", "--json")
    assert tap.returncode == 0 and json.loads(tap.stdout)["src"] == "executor", tap.stderr

    # a stranger: a valid CURVE client that knows the executor's public key, with a key of its own not admitted
    alerts = Listener(home, "executor", ("alert.",))
    listeners.append(alerts)
    alerts.wait_live()  # subscribed before the denial is alerted
    cfg = home.config()
    executor_key = keys.load_publics(cfg.path(cfg.wire.keys_dir))["executor"]
    ctx = zmq.Context()
    try:
        stranger = ctx.socket(zmq.REQ)
        stranger.setsockopt(zmq.LINGER, 0)
        stranger.curve_publickey, stranger.curve_secretkey = zmq.curve_keypair()
        stranger.curve_serverkey = executor_key
        stranger.connect(cfg.endpoint("executor", "rep"))
        stranger.send(wire.encode_request("command", "x-1", messages.CommandArgs("pause", {})))
        denied = wait_for(lambda: home.status_of("executor")["wire_errors"].get("curve_denied", 0), 10,
                          "the stranger's handshake counted")
        assert denied >= 1
        assert not stranger.poll(500)  # no answer: the request never reached the executor
        assert home.status_of("executor")["paused"] is False
        summary = home.status()["services"]["executor"]  # the orchestrator sees it in the heartbeat too
        wait_for(lambda: home.status()["services"]["executor"]["wire_errors"].get("curve_denied"), 10,
                 f"the denial in the executor's heartbeat (was {summary['wire_errors']})")
        alerted = wait_for(lambda: [a for a in alerts.poll() if a.kind == "curve_denied"], 10,
                           "the executor's alert of the refused handshake")
        assert alerted[0].severity == "warning" and alerted[0].details["denied"] >= 1, alerted
        plain = ctx.socket(zmq.REQ)  # no CURVE at all: the handshake fails, nothing in clear goes through
        plain.setsockopt(zmq.LINGER, 0)
        plain.connect(cfg.endpoint("executor", "rep"))
        plain.send(wire.encode_request("command", "x-2", messages.CommandArgs("pause", {})))
        assert not plain.poll(500)
        assert home.status_of("executor")["paused"] is False
        stranger.close()
        plain.close()
    finally:
        ctx.destroy(linger=0)
    assert "CURVE handshake denied: unknown public key" in home.log("executor")


def test_under_supervisord_with_curve_a_killed_service_heals(tmp_path):
    """The deploy: supervisord starts every program with wire.curve on; the operator's CLI sees them; kill -9 of the
    connector (every other service its client) is healed through new handshakes."""
    home = Home(tmp_path, {"wire": {"curve": True}})
    cfg = home.config()
    keys.init(cfg.path(cfg.wire.keys_dir), keys.names(config.SERVICES))
    keys.secure_process(cfg, keys.OPERATOR)
    try:
        home.start_supervisord()
        home.wait_state("RUNNING", timeout=60)
        old = home.pid_of("connector")
        os.kill(old, signal.SIGKILL)
        wait_for(lambda: home.pid_of("connector") not in (0, old), 15, "supervisord to respawn the connector")
        wait_for(lambda: (lambda s: s["system"] == "RUNNING" and s["services"]["connector"]["restarts"] == 1 and
                          s["services"]["connector"]["pid"] == home.pid_of("connector"))(home.status()),
                 30, "RUNNING again after kill -9 connector")
        res = home.oracle("ctl", "status", "--json")
        assert res.returncode == 0, res.stderr
        status = json.loads(res.stdout)
        assert status["system"] == "RUNNING"
        assert all(s.get("wire_errors", {}).get("curve_denied", 0) == 0 for s in status["services"].values())
    finally:
        home.close()
        bus.plain()
